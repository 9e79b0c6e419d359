"""The floor for /metrics: the least an aiohttp process can do to answer a scrape.

Serves one fixed body, read from files at start, with the headers the exporter sends; gzipped
when the client accepts it. Same aiohttp, same process model (one process, one event loop, no
access log) as `jobstore-exporter serve`, nothing rendered and nothing polled.

    python -m bench.floor_server PORT BODY_FILE GZIP_FILE CONTENT_TYPE
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web


def make_app(plain: bytes, gzipped: bytes, content_type: str) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return web.Response(body=gzipped, headers=headers)
        return web.Response(body=plain, headers=headers)

    async def readyz(_request: web.Request) -> web.Response:
        return web.Response(text="ready\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", readyz)
    return app


def main(argv: list[str]) -> None:
    port, plain_file, gzip_file, content_type = argv
    app = make_app(Path(plain_file).read_bytes(), Path(gzip_file).read_bytes(), content_type)
    web.run_app(app, host="127.0.0.1", port=int(port), access_log=None, print=None)


if __name__ == "__main__":
    main(sys.argv[1:])
