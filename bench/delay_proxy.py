#!/usr/bin/env python3
"""A TCP proxy that adds a fixed one-way delay to every byte, in both directions.

The no-op bench puts one in front of each port `provision up` uses (SSH and the
server's HTTP ports) to see what a far host costs: 25 ms one way is a round trip
of 50 ms, a host in another region. Bytes keep their order and are never
throttled: each chunk read is written `delay` seconds after it arrived, so the
proxy adds latency, not bandwidth limits, and a connection's close is delayed
likewise.

    python bench/delay_proxy.py --delay-ms 25 127.0.8.1:2222=10.0.0.2:22 \
        127.0.8.1:8180=10.0.0.2:8180
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay: float) -> None:
    """Copy reader to writer, each chunk `delay` seconds after it was read (order kept).

    A reset from the reader's side (a client that died or closed with unread data) is passed
    on as TCP would: what it sent before is still delivered, then the other connection is
    closed, so the far end (sshd) sees its client go instead of waiting for it forever.
    """
    queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                writer.close()
                return
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            try:
                data: bytes | None = await reader.read(65536)
            except (ConnectionError, OSError):
                data = None
            queue.put_nowait((time.monotonic() + delay, data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()


async def _serve_one(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                     target: tuple[str, int], delay: float) -> None:
    await asyncio.sleep(delay)  # the SYN's trip out
    try:
        server_r, server_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    await asyncio.sleep(delay)  # the SYN-ACK's trip back
    try:
        await asyncio.gather(_pipe(client_r, server_w, delay), _pipe(server_r, client_w, delay))
    finally:
        for w in (client_w, server_w):
            w.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def serve(routes: list[tuple[tuple[str, int], tuple[str, int]]], delay: float) -> None:
    """Listen on every `listen` address and forward to its target, until cancelled."""
    servers = []
    for listen, target in routes:
        async def handle(r, w, target=target):
            await _serve_one(r, w, target, delay)

        servers.append(await asyncio.start_server(handle, *listen, reuse_address=True))
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=25.0)
    parser.add_argument("routes", nargs="+", metavar="LISTEN=TARGET",
                        help="host:port=host:port pairs")
    args = parser.parse_args()
    routes = []
    for route in args.routes:
        listen, _, target = route.partition("=")
        routes.append((_address(listen), _address(target)))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(routes, args.delay_ms / 1000.0))


if __name__ == "__main__":
    main()
