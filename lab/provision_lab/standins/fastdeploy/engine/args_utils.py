"""The engine's command-line flags, named and defaulted as upstream's EngineArgs.add_cli_args.

Only the flags this release has (its build facts, from the lab's recorded upstream data) are
added, so a flag the release lacks is an argparse error (exit status 2, "unrecognized
arguments"), as in the real server of that release.
"""

from __future__ import annotations

import argparse
import json

from fastdeploy import _lab
from fastdeploy.utils import console_logger


class DeprecatedOptionWarning(argparse.Action):
    """Upstream marks flags it no longer needs (`--enable-mm` from 2.2) with a warning."""

    def __init__(self, option_strings, dest, **kwargs):
        kwargs.setdefault("nargs", 0)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        console_logger().warning(
            f"Deprecated option is detected: {option_string}, which may be removed later"
        )
        setattr(namespace, self.dest, True)


def release_adder(parser: argparse.ArgumentParser):
    """parser.add_argument, keeping only the option strings this release accepts."""

    def add(*names: str, **kwargs) -> None:
        known = [n for n in names if _lab.accepts(n)]
        if known:
            parser.add_argument(*known, **kwargs)

    return add


def add_cli_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add = release_adder(parser)
    add("--model", type=str, default="baidu/ernie-45-turbo", help="model name or path")
    add("--served-model-name", type=str, default=None)
    add("--revision", type=str, default="master")
    add("--tokenizer", type=str, default=None)
    add("--max-model-len", type=int, default=2048)
    add("--max-num-seqs", type=int, default=8)
    add("--max-num-batched-tokens", type=int, default=None)
    add("--tensor-parallel-size", "-tp", type=int, default=1)
    add("--data-parallel-size", type=int, default=1)
    add("--local-data-parallel-id", type=int, default=0)
    add("--enable-expert-parallel", action="store_true")
    add("--quantization", type=str, default=None)
    add("--gpu-memory-utilization", type=float, default=0.9)
    add("--kv-cache-ratio", type=float, default=0.75)
    add("--num-gpu-blocks-override", type=int, default=None)
    add("--block-size", type=int, default=64)
    add("--swap-space", type=float, default=None)
    add("--engine-worker-queue-port", type=str, default="8002")
    add("--cache-queue-port", type=str, default="8003")
    if _lab.has("enable_mm_deprecated"):
        add("--enable-mm", action=DeprecatedOptionWarning, default=False)
    else:
        add("--enable-mm", action="store_true")
    add("--reasoning-parser", type=str, default=None)
    add("--tool-call-parser", type=str, default=None)
    add("--tool-parser-plugin", type=str, default=None)
    add("--limit-mm-per-prompt", type=json.loads, default=None)
    add("--mm-processor-kwargs", type=json.loads, default=None)
    add("--enable-chunked-prefill", action="store_true")
    add("--max-long-partial-prefills", type=int, default=1)
    add("--long-prefill-token-threshold", type=int, default=0)
    add("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=True)
    add("--graph-optimization-config", type=json.loads, default=None)
    add("--use-cudagraph", action="store_true")
    add("--speculative-config", type=json.loads, default=None)
    add("--load-choices", type=str, default="default")
    add("--chat-template", type=str, default=None)
    add("--enable-logprob", action="store_true")
    add("--max-logprobs", type=int, default=20)
    add("--disable-custom-all-reduce", action="store_true")
    add("--splitwise-role", type=str, default="mixed")
    add("--ips", type=str, default=None)
    add("--dynamic-load-weight", action="store_true")
    add("--guided-decoding-backend", type=str, default="off")
    add("--seed", type=int, default=0)
    return parser
