"""paddle.jit: only what FastDeploy's install check imports."""

from paddle.jit import marker

__all__ = ["marker"]
