"""A measurement of one design, not the product: polls and renders in a child process.

Issue #11 asks that the event loop serving scrapes never wait for a poll or a render for more
than a few milliseconds, and, if that cannot be had in one process (polls and renders are
Python holding the interpreter lock), to measure a design that moves them into a child process
handing finished bodies to the server. This is that design, cut to what ``/metrics`` needs:

* the **worker** (``--worker``, started by the server) builds the sidecar as ``serve`` does
  (``Sidecar``: the same pollers, metric store and body cache, a poll every ``--poll-interval``)
  and, whenever the body Prometheus would get changes (after each poll, and each second for the
  clock part), writes it to its stdout as one frame: an 8-byte header (content-type length,
  body length) then the content type and the gzipped body;
* the **server** is the floor's aiohttp process (one loop, no access log) plus one thread that
  reads frames (the pipe read and the copy are C, the lock released), and serves the latest
  body with ``BodyResponse`` as ``serve`` does; a scrape without gzip gets the body
  decompressed once per body, in the reader thread.

What it leaves out (what building it into ``serve`` would still need): the status pages'
snapshot, ``/readyz`` from the worker's poll state, reload, auth, TLS, the server's own process
metrics, and restarting a dead worker. ``bench.scrape --child`` measures it against the floor,
alternating, the same way as ``serve``.

    python -m bench.child_serve --db-url URL --listen-address 127.0.0.1:PORT [--poll-interval 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import struct
import subprocess
import sys
import threading
from typing import IO

from aiohttp import web

from exporter.sidecar import memory
from exporter.sidecar.serving.server import SWITCH_INTERVAL, BodyResponse, split_address

ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
FRAME = struct.Struct("<II")


def worker(url: str, poll_interval: float) -> None:
    """The child: polls and renders as ``serve`` does; each new body goes out as a frame."""
    from exporter.sidecar.config import load_config
    from exporter.sidecar.serving.server import Sidecar

    memory.tune_allocator()
    out = os.fdopen(sys.stdout.fileno(), "wb", buffering=0)
    sidecar = Sidecar(load_config(db_url=url, poll_interval=poll_interval, log_level="warning"))

    async def run() -> None:
        sidecar.start()
        last = None
        while True:
            ready = all(p.snapshot.ever_succeeded for p in sidecar.pollers)
            if ready:
                body = await sidecar.bodies.get(ACCEPT)
                if body is not last:
                    last = body
                    kind = body.content_type.encode()
                    frame = FRAME.pack(len(kind), len(body.gzipped)) + kind
                    await asyncio.to_thread(_send, out, frame, body.gzipped)
            await asyncio.sleep(0.05)

    asyncio.run(run())


def _send(out: IO[bytes], frame: bytes, body: bytes) -> None:
    out.write(frame)
    out.write(body)


class Bodies:
    """The latest body from the worker; filled by the reader thread."""

    def __init__(self) -> None:
        self.content_type = ""
        self.gzipped = b""
        self.plain = b""
        self.ready = threading.Event()

    def read_from(self, pipe: IO[bytes], plain_too: bool) -> None:
        while True:
            header = pipe.read(FRAME.size)
            if len(header) < FRAME.size:
                return
            kind_len, body_len = FRAME.unpack(header)
            kind = pipe.read(kind_len).decode()
            body = pipe.read(body_len)
            plain = gzip.decompress(body) if plain_too else b""
            # Three attribute stores; a scrape between them may pair a new type with an old body
            # only in the first frame, when both are set before ``ready``.
            self.content_type, self.gzipped, self.plain = kind, body, plain
            self.ready.set()


def make_app(bodies: Bodies) -> web.Application:
    async def metrics(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": bodies.content_type, "Vary": "Accept, Accept-Encoding"}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return BodyResponse(body=bodies.gzipped, headers=headers)
        return BodyResponse(body=bodies.plain, headers=headers)

    async def readyz(_request: web.Request) -> web.Response:
        if not bodies.ready.is_set():
            return web.Response(status=503, text="not ready\n")
        return web.Response(text="ready\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/healthz", readyz)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--listen-address", default="127.0.0.1:9814")
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--no-plain", action="store_true", help="gzip only (no decompression)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.db_url, args.poll_interval)
        return
    memory.tune_allocator()
    sys.setswitchinterval(SWITCH_INTERVAL)
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.child_serve", "--worker", "--db-url", args.db_url,
         "--poll-interval", str(args.poll_interval)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    bodies = Bodies()
    reader = threading.Thread(
        target=bodies.read_from, args=(child.stdout, not args.no_plain), daemon=True
    )
    reader.start()
    host, port = split_address(args.listen_address)
    try:
        web.run_app(make_app(bodies), host=host, port=port, access_log=None, print=None)
    finally:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(10)
        if child.poll() is None:
            child.kill()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
