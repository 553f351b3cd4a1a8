"""provision: bare Ubuntu 22.04 GPU hosts to a verified FastDeploy ERNIE-4.5 server, over SSH."""

__version__ = "0.1.0"
