"""Serve a built dashboard folder on 127.0.0.1 (the site also opens from disk; serving is for
a colleague's browser on the same machine, or a tunnel)."""

import contextlib
import functools
import http.server
from pathlib import Path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files only; one log line per request is noise for a dashboard."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def make_server(folder: Path, port: int = 8050) -> http.server.ThreadingHTTPServer:
    """A server bound to 127.0.0.1 only (never all interfaces: the marts are business data)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def serve(folder: Path, port: int = 8050) -> int:
    """Serve until Ctrl-C; returns the exit code."""
    folder = Path(folder)
    if not (folder / "index.html").exists():
        print(f"voronka dashboard: no dashboard in {folder}; build it first")
        return 1
    with make_server(folder, port) as server:
        print(f"Dashboard served on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)",
              flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0
