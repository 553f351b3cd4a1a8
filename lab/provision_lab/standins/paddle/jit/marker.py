"""paddle.jit.marker.unified: FastDeploy's docs import it to prove Paddle is new enough."""

from __future__ import annotations


def unified(fn=None, for_sot: bool = True, for_ast: bool = True):
    """Mark a function for both dynamic-to-static paths; the stand-in leaves it unchanged."""
    if fn is None:
        return lambda f: f
    return fn
