"""paddle.utils: only run_check, the install check everybody runs."""

from paddle.utils.install_check import run_check

__all__ = ["run_check"]
