"""Shared machinery of the emulators: fault plan, threaded HTTP server, request log, rate window."""

from __future__ import annotations

import abc
import bisect
import collections
import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Body faults (``truncated_json``, ``html_200``, ``html_5xx``) are generic, served by the base
# class for every emulator: a proxy or load balancer in front of any API sends them.
BODY_FAULT_KINDS = frozenset({"truncated_json", "html_200", "html_5xx"})
FAULT_KINDS = frozenset({"429", "5xx", "slow", "expired_token", "drop"}) | BODY_FAULT_KINDS


@dataclass
class Fault:
    kind: str
    remaining: int
    path_prefix: str = ""
    params: dict[str, Any] = field(default_factory=dict)


class FaultPlan:
    """Thread-safe queue of faults; each matching request consumes one unit of the first match.

    ``add("5xx", count=2, path_prefix="/api/v4/leads", status=502)`` makes the next two
    requests whose path starts with ``/api/v4/leads`` fail with 502. Faults are matched in the
    order they were added. ``add("drop", after_write=True)`` serves the request (a write is
    applied) and then drops the connection: the client never learns that the server acted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, kind: str, count: int = 1, path_prefix: str = "", **params: Any) -> FaultPlan:
        kind = str(kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be >= 1")
        if kind in ("5xx", "html_5xx"):
            status = int(params.get("status", 500 if kind == "5xx" else 502))
            if not 500 <= status <= 599:
                raise ValueError(f"5xx fault needs a 5xx status, got {status}")
            params["status"] = status
        with self._lock:
            self._faults.append(Fault(kind, count, path_prefix, dict(params)))
        return self

    def take(self, path: str) -> Fault | None:
        """Consume and return the first fault matching ``path`` (or None)."""
        with self._lock:
            for i, fault in enumerate(self._faults):
                if path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        del self._faults[i]
                    return Fault(fault.kind, 1, fault.path_prefix, dict(fault.params))
        return None

    def pending(self) -> int:
        """How many faulty responses are still queued."""
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __len__(self) -> int:
        return self.pending()


class SlidingWindow:
    """Counts events in a sliding time window; ``hit`` says whether the limit is exceeded."""

    def __init__(self, limit: float, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def hit(self, now: float | None = None) -> bool:
        """Record one request arriving at ``now``; return True when it exceeds the limit (it
        is still counted): more than ``limit`` arrivals in a window that holds it. Handler
        threads may record arrivals out of order, so the log stays sorted and every window
        ending at an arrival from ``now`` on is counted."""
        if not self.limit:
            return False
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._times
            while times and times[0] <= now - self.window_s:
                times.popleft()
            bisect.insort(times, now)
            ends = [t for t in times if t >= now]  # windows (t - window_s, t] holding now
            return any(bisect.bisect_right(times, t) - bisect.bisect_right(times, t - self.window_s)
                       > self.limit for t in ends if t < now + self.window_s)

    def reset(self) -> None:
        with self._lock:
            self._times.clear()


class Request:
    """What a route handler sees of an HTTP request."""

    def __init__(self, method: str, raw_path: str, headers: Any, body: bytes,
                 arrived: float | None = None) -> None:
        self.method = method
        # when the server had it (monotonic): what a rate window counts, not when a handler
        # thread got round to it (the emulators share an interpreter lock with their callers)
        self.arrived = time.monotonic() if arrived is None else arrived
        parts = urlsplit(raw_path)
        self.path = parts.path
        self.query_string = parts.query
        self.query_pairs: list[tuple[str, str]] = parse_qsl(parts.query, keep_blank_values=True)
        self.headers = headers
        self.body = body

    @property
    def query(self) -> dict[str, Any]:
        """Query as a dict: a single value per key as str, repeated keys as a list."""
        out: dict[str, Any] = {}
        for k, v in self.query_pairs:
            if k in out:
                prev = out[k]
                out[k] = [*prev, v] if isinstance(prev, list) else [prev, v]
            else:
                out[k] = v
        return out

    def get(self, name: str, default: str | None = None) -> str | None:
        """Last value of a query parameter."""
        value = default
        for k, v in self.query_pairs:
            if k == name:
                value = v
        return value

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.query_pairs if k == name]

    def header(self, name: str, default: str | None = None) -> str | None:
        value = self.headers.get(name)
        return default if value is None else value

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


class Response:
    def __init__(
        self,
        status: int,
        body: bytes | str | dict | list | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.headers = dict(headers or {})
        if isinstance(body, dict | list):
            self.body = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.content_type = content_type or "application/json"
        elif isinstance(body, str):
            self.body = body.encode("utf-8")
            self.content_type = content_type or "text/plain; charset=utf-8"
        else:
            self.body = body or b""
            self.content_type = content_type
        self.declared_length: int | None = None  # a Content-Length other than the body's


def html_page(title: str, text: str) -> str:
    """A long HTML page as CDNs and load balancers serve: kilobytes of inline style before the
    title, so the title is past any short excerpt of the body."""
    style = "".join(f".c{i} {{ margin: {i}px; padding: {i}px; color: #{i:06x}; }}\n"
                    for i in range(120))
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<style>\n{style}</style>\n<title>{title}</title>\n</head>\n<body>\n"
            f"<h1>{title}</h1>\n<p>{text}</p>\n</body>\n</html>\n")


class DropConnection(Exception):
    """Raised by a handler to close the connection without any response."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close kept-alive client connections so no request is served after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class EmulatorServer(abc.ABC):
    """Base class: runs ``self.handle(request) -> Response`` on a ThreadingHTTPServer."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.faults = FaultPlan()
        self.request_log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self):
        if self._server is not None:
            return self
        handler = _make_handler(self)
        self._server = _Server((self.host, self.port), handler)
        self.port = self._server.server_address[1]
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- hooks -------------------------------------------------------------------------------
    @abc.abstractmethod
    def handle(self, request: Request) -> Response:
        """Answer one request the way the emulated API does."""

    @abc.abstractmethod
    def fault_response(self, fault: Fault, request: Request) -> Response:
        """The emulated API's own body for an injected fault (429, 5xx, expired token)."""

    # -- dispatch ----------------------------------------------------------------------------
    def _dispatch(self, request: Request, entry: dict[str, Any]) -> Response | None:
        fault = self.faults.take(request.path)
        if fault is not None:
            entry["fault"] = fault.kind
            if fault.kind == "drop":
                if fault.params.get("after_write"):
                    self.handle(request)  # the server acts; its answer is lost on the way
                return None
            if fault.kind == "slow":
                time.sleep(float(fault.params.get("seconds", 1.0)))
                return self.handle(request)
            if fault.kind in BODY_FAULT_KINDS:
                return self.body_fault(fault, request)
            return self.fault_response(fault, request)
        return self.handle(request)

    def body_fault(self, fault: Fault, request: Request) -> Response:
        """What a proxy in front of the API sends: the real answer cut short (``truncated_json``;
        ``declare_full_length=True`` keeps the full Content-Length, so the connection breaks
        mid-body), a maintenance page with 200 (``html_200``) or a long HTML error page with a
        5xx (``html_5xx``, ``status=502`` by default)."""
        if fault.kind == "truncated_json":
            real = self.handle(request)
            keep = max(1, int(len(real.body) * float(fault.params.get("fraction", 0.5))))
            cut = Response(real.status, real.body[:keep], real.content_type, real.headers)
            if fault.params.get("declare_full_length"):
                cut.declared_length = len(real.body)
            return cut
        if fault.kind == "html_200":
            return Response(200, html_page("Service temporarily unavailable",
                                           "The site is under maintenance."),
                            "text/html; charset=utf-8")
        status = int(fault.params["status"])
        title = f"{status} {fault.params.get('title', 'Bad Gateway')}"
        return Response(status, html_page(title, "The upstream server did not answer."),
                        "text/html; charset=utf-8")

    def _log_start(self, request: Request, t: float) -> dict[str, Any]:
        """Log a request on arrival (so the log is in arrival order); status is set when done."""
        entry = {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "status": None,
            "t": t,
            "fault": None,
        }
        with self._log_lock:
            self.request_log.append(entry)
        return entry


def _make_handler(emulator: EmulatorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "voronka-emulator/0.1"
        timeout = 60

        def log_message(self, format: str, *args: Any) -> None:  # silence stderr logging
            return

        def _serve(self) -> None:
            t, arrived = time.time(), time.monotonic()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            request = Request(self.command, self.path, self.headers, body, arrived)
            entry = emulator._log_start(request, t)
            try:
                response = emulator._dispatch(request, entry)
            except DropConnection:
                response = None
                entry["fault"] = "drop"
            except Exception as exc:  # a bug in the emulator must still answer
                response = Response(500, {"title": "EmulatorError", "status": 500,
                                          "detail": f"{type(exc).__name__}: {exc}"})
            if response is None:
                self.close_connection = True
                return
            entry["status"] = response.status
            self.send_response(response.status)
            if response.content_type and response.body:
                self.send_header("Content-Type", response.content_type)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if response.status not in (204, 304):
                declared = response.declared_length
                self.send_header("Content-Length", str(declared or len(response.body)))
                if declared:
                    self.close_connection = True
            self.end_headers()
            if response.body and self.command != "HEAD" and response.status not in (204, 304):
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    return Handler
