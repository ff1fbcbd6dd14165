"""The one shared HTTP layer of every voronka extractor.

It owns what every API source needs and no source should re-implement:

- client-side rate limiters shared by every entity of one API account, so a normal run never
  earns a 429 (amoCRM blocks the IP with 403s after repeated 429s): a sliding window
  (``limiter_for``: amoCRM, Yandex Direct, the ad APIs) and a leaky bucket (``bucket_for``:
  Bitrix24), with one interface (``acquire``/``pause``/``saturate``);
- retries with exponential backoff and jitter on 429, 5xx, dropped connections and timeouts,
  honouring ``Retry-After``, amoCRM's ``retry_after`` (problem+json body) and Yandex's ``retryIn``;
  a 2xx whose body is an HTML page (a proxy's maintenance page) or JSON cut short, and a body
  broken off mid-transfer, are retried the same way (``transient_body_problem``);
- one token refresh on 401 through a callback, and an ``on_response`` hook through which a
  source adapts to rate-limit headers (VK ``X-RateLimit-*``, Meta's usage headers);
- ``ApiError`` naming the source, the HTTP status and the platform's own code and message
  (``parse_error_body`` knows every source's error envelope; an HTML error page is named by its
  title, or by the status text when it has none), with a redacted URL and body
  excerpt: no token, client secret or refresh token ever reaches an exception message or a log
  line, ``urllib3``'s request lines included (``LOG_REDACTION``);
- HAL pagination (amoCRM v4: follow ``_links.next.href``; an empty list is HTTP 204).
"""

from __future__ import annotations

import email.utils
import html
import json
import logging
import math
import random
import re
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
import requests.adapters
import requests.auth
import urllib3
import urllib3.connection

from warehouse.records import RawRecord

log = logging.getLogger("voronka.extractors")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A connection that broke while sending or receiving: worth another attempt. A body cut off
# mid-transfer (Content-Length not reached) is a ChunkedEncodingError, not a ConnectionError.
DROPPED = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
           requests.exceptions.ContentDecodingError)
HTML_PAGE = "HTML page"
_HTML_START = re.compile(rb"^\s*(?:<!doctype\s+html|<html[\s>])", re.IGNORECASE)
_HTML_TAG = re.compile(r"<[^>]*>")
_HTML_TITLES = (re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL),
                re.compile(r"<h1[^>]*>(.*?)</h1\s*>", re.IGNORECASE | re.DOTALL))
SENSITIVE_PARAMS = frozenset(
    {"access_token", "refresh_token", "client_secret", "token", "code", "auth", "password"}
)
_EXCERPT_CHARS = 500
_ERROR_BODY_CHARS = 65_536  # enough for any error envelope


# --------------------------------------------------------------------------------------------
# Errors and redaction
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An API call that failed for good: non-retryable status, or retries exhausted.

    Every text attribute is already redacted. The response object is deliberately not kept:
    its ``request.headers`` carry the bearer token.
    """

    def __init__(
        self,
        status: int | None,
        url: str,
        body_excerpt: str,
        source: str,
        *,
        message: str | None = None,
        error_code: str | None = None,
        attempts: int = 1,
    ) -> None:
        self.status = status
        self.url = url
        self.body_excerpt = body_excerpt
        self.source = source
        self.error_code = error_code
        self.attempts = attempts
        self.detail = message or describe_error_body(body_excerpt) or ""
        if self.detail == HTML_PAGE and status is not None:  # untitled page: say the status
            self.detail = describe_html("", status_line(status))
        status_txt = f"HTTP {status}" if status is not None else "no HTTP response"
        text = f"{source}: {status_txt} for {url}"
        if attempts > 1:
            text += f" after {attempts} attempts"
        if self.detail:
            text += f": {self.detail}"
        super().__init__(text)

    def __reduce__(self):  # picklable across process boundaries (e.g. Dagster executors)
        return (
            _rebuild_api_error,
            (type(self), self.status, self.url, self.body_excerpt, self.source, self.detail,
             self.error_code, self.attempts),
        )


def _rebuild_api_error(cls, status, url, body_excerpt, source, detail, error_code, attempts):
    return cls(status, url, body_excerpt, source, message=detail or None,
               error_code=error_code, attempts=attempts)


class _NoNetrcAuth(requests.auth.AuthBase):
    """Passing an explicit auth object stops ``requests`` from applying ~/.netrc credentials,
    which would otherwise replace our ``Authorization: Bearer`` header."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


class AuthorizationError(ApiError):
    """Credentials are gone for good (spent refresh token, revoked long-lived token)."""


class Redactor:
    """Replaces known secrets and secret-looking fragments in any text with ``***``.

    Secrets can be added later (rotated tokens), so the set is mutable and thread-safe.
    """

    _PATTERNS = (
        # Authorization: Bearer xyz
        (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
        # "access_token": "xyz" in JSON bodies
        (
            re.compile(
                r'(?i)("(?:access_token|refresh_token|client_secret|token)"\s*:\s*")'
                r'[^"]*(")'
            ),
            r"\1***\2",
        ),
        # "code": "<OAuth authorization code>", but not error names like "ERR_LIMIT_EXCEEDED"
        (re.compile(r'("code"\s*:\s*")(?![A-Z][A-Z0-9_]*")[^"]*(")'), r"\1***\2"),
        # access_token=xyz in query strings / form bodies
        (
            re.compile(r"(?i)\b(access_token|refresh_token|client_secret|token|code|auth)=[^&\s]+"),
            r"\1=***",
        ),
    )

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        # Very short strings would shred ordinary text; real secrets are long.
        if secret and len(secret) >= 4:
            with self._lock:
                self._secrets.add(secret)

    def __call__(self, text: str | None) -> str:
        if not text:
            return ""
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for s in secrets:
            text = text.replace(s, "***")
        for pattern, repl in self._PATTERNS:
            text = pattern.sub(repl, text)
        return text

    def url(self, url: str) -> str:
        """The URL with sensitive query parameters masked and known secrets removed."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return self(url)
        if parts.query:
            pairs = [
                (k, "***" if k.lower() in SENSITIVE_PARAMS else v)
                for k, v in parse_qsl(parts.query, keep_blank_values=True)
            ]
            query = urlencode(pairs, safe="[]*")
            # userinfo (user:pass@host) never belongs in a log
            netloc = parts.netloc.rsplit("@", 1)[-1]
            url = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
        return self(url)


class _RedactingFilter(logging.Filter):
    """Passes third-party log records that print URLs through every live ``Redactor``.

    ``urllib3`` logs each request line at DEBUG with its full path and query: Bitrix24's
    webhook code sits in the path, its OAuth renewal is a GET with ``client_secret`` and
    ``refresh_token`` in the query (as documented), and Graph's ``next`` links repeat
    ``access_token``. voronka's own log lines show redacted URLs; these records are not ours,
    so they are scrubbed here. Redactors are held weakly, so a finished source's secrets go
    with it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._redactors: weakref.WeakSet[Redactor] = weakref.WeakSet()
        self._lock = threading.Lock()

    def register(self, redactor: Redactor) -> None:
        with self._lock:
            self._redactors.add(redactor)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # pragma: no cover - a broken record is not ours to fix
            return True
        with self._lock:
            redactors = list(self._redactors)
        redacted = text
        for redactor in redactors:
            redacted = redactor(redacted)
        if redacted != text:
            record.msg, record.args = redacted, None
        return True


# The loggers of ``urllib3`` that print request URLs. A filter on a logger sees only records
# logged on that very logger (not its children's), so each one gets it.
URL_LOGGERS = ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry")
LOG_REDACTION = _RedactingFilter()
for _name in URL_LOGGERS:
    logging.getLogger(_name).addFilter(LOG_REDACTION)  # idempotent: one filter per logger


def register_redactor(redactor: Redactor) -> None:
    """Scrub ``redactor``'s secrets from ``urllib3``'s request logs too (``HttpClient`` does
    this for its own redactor)."""
    LOG_REDACTION.register(redactor)


# --------------------------------------------------------------------------------------------
# Error envelopes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorInfo:
    """What an API error body says, whichever platform sent it.

    ``code`` is the platform's own error code (``ERR_LIMIT_EXCEEDED``, ``53``, ``17``,
    ``USER_PERMISSION_DENIED``...), ``message`` a one-line summary for an ``ApiError``, and
    ``fields`` the raw error object, for the few source-specific fields a source acts on
    (Meta's ``error_subcode``, Google's ``details``).
    """

    code: str | None = None
    message: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


def _code(value: Any) -> str | None:
    """A code as text; a value the Redactor masked (``***``) is no code at all."""
    if value is None or value == "" or value == "***":
        return None
    return str(value)


def _yandex_error(err: Mapping[str, Any]) -> ErrorInfo:
    """Yandex Direct v5: ``{"error": {"error_code", "error_string", "error_detail",
    "request_id"}}``."""
    parts = [f"error_code={err.get('error_code')}"]
    parts += [str(err[k]) for k in ("error_string", "error_detail") if err.get(k)]
    if err.get("request_id"):
        parts.append(f"(request_id={err['request_id']})")
    return ErrorInfo(_code(err.get("error_code")), " ".join(parts), err)


def _google_error(err: Mapping[str, Any]) -> ErrorInfo:
    """Google APIs: ``{"error": {"code": 403, "status", "message", "details": [GoogleAdsFailure
    {"errors": [{"errorCode": {"authorizationError": "USER_PERMISSION_DENIED"}, "message"}],
    "requestId"}]}}``; the code is the first ``errorCode`` value, else the canonical status."""
    failures = [d for d in err.get("details") or []
                if isinstance(d, dict) and isinstance(d.get("errors"), list)]
    errors = [e for f in failures for e in f["errors"] if isinstance(e, dict)]
    codes = [(kind, str(value)) for e in errors for kind, value in
             (e.get("errorCode") if isinstance(e.get("errorCode"), dict) else {}).items()]
    status = err.get("status")
    text = " ".join([str(status or err.get("code") or "error")]
                    + [f"{kind}={value}" for kind, value in codes])
    detail = "; ".join(str(e["message"]) for e in errors if e.get("message")) or err.get(
        "message")
    if detail:
        text += f": {detail}"
    request_id = next((f["requestId"] for f in failures if f.get("requestId")), None)
    if request_id:
        text += f" (requestId={request_id})"
    return ErrorInfo(codes[0][1] if codes else _code(status), text, err)


def _graph_error(err: Mapping[str, Any]) -> ErrorInfo:
    """Meta Graph: ``{"error": {"message", "type", "code": 17, "error_subcode",
    "error_user_msg", "fbtrace_id"}}``."""
    text = f"Graph error code={err.get('code')}"
    if err.get("error_subcode") is not None:
        text += f" subcode={err['error_subcode']}"
    if err.get("type"):
        text += f" ({err['type']})"
    if err.get("message"):
        text += f": {err['message']}"
    if err.get("error_user_msg"):
        text += f" - {err['error_user_msg']}"
    if err.get("fbtrace_id"):
        text += f" (fbtrace_id={err['fbtrace_id']})"
    return ErrorInfo(_code(err.get("code")), text, err)


def _coded_error(err: Mapping[str, Any]) -> ErrorInfo:
    """VK Ads and the like: ``{"error": {"code": "ERR_WRONG_PARAMETER", "message"}}``."""
    code = _code(err.get("code"))
    pieces = [p for p in (code, err.get("message")) if p]
    return ErrorInfo(code, ": ".join(str(p) for p in pieces) or None, err)


def _fields_error(err: Mapping[str, Any]) -> ErrorInfo:
    """VK Ads validation: ``{"error": {"fields": {"file": [{"line_number", "line", "code"}]}}}``
    (``error_code`` in a partly failed list). The code is the first problem's; the offending
    ``line`` is left out of the message: it is a customer's phone or e-mail."""
    problems = [(name, p) for name, items in err["fields"].items()
                for p in (items if isinstance(items, list) else [items]) if isinstance(p, dict)]
    codes = [_code(p.get("code") or p.get("error_code")) for _, p in problems]
    parts = []
    for (name, problem), code in list(zip(problems, codes, strict=True))[:5]:
        piece = f"{name}: {code or 'invalid'}"
        if problem.get("line_number") is not None:
            piece += f" at line {problem['line_number']}"
        if problem.get("message"):
            piece += f" ({problem['message']})"
        parts.append(piece)
    if len(problems) > 5:
        parts.append(f"and {len(problems) - 5} more")
    return ErrorInfo(next((c for c in codes if c), None), "; ".join(parts) or None, err)


def _errors_list(body: Mapping[str, Any]) -> ErrorInfo:
    """Yandex Audiences: ``{"errors": [{"error_type", "message"}], "code": 400, "message"}``;
    the code is the first ``error_type`` (the HTTP status in ``code`` says nothing new)."""
    errors = [e for e in body["errors"] if isinstance(e, dict)]
    code = next((_code(e.get("error_type")) for e in errors if _code(e.get("error_type"))),
                None)
    detail = "; ".join(str(e["message"]) for e in errors if e.get("message")) or body.get(
        "message")
    pieces = [str(p) for p in (code, detail) if p]
    return ErrorInfo(code, ": ".join(pieces) or None, body)


def _is_graph(err: Mapping[str, Any]) -> bool:
    return isinstance(err.get("code"), int) or any(
        k in err for k in ("error_subcode", "fbtrace_id", "type", "error_user_msg"))


def parse_error_object(err: Mapping[str, Any]) -> ErrorInfo:
    """The ``error`` object of an ``{"error": {...}}`` envelope (also one a source assembles,
    such as a failed Meta report run's ``error_*`` fields): the platforms differ in its keys."""
    if isinstance(err.get("fields"), dict):
        return _fields_error(err)
    if "error_code" in err:
        return _yandex_error(err)
    if "status" in err or "details" in err:
        return _google_error(err)
    if _is_graph(err):
        return _graph_error(err)
    return _coded_error(err)


def _problem_or_oauth(body: Mapping[str, Any]) -> ErrorInfo:
    """amoCRM problem+json (``title``/``detail``/``hint``, ``validation-errors``) and the
    OAuth/Bitrix24 ``{"error": "CODE", "error_description"}`` shape."""
    err = body.get("error")
    pieces = [str(err)] if isinstance(err, str) and err else []
    pieces += [str(body[k]) for k in ("title", "detail", "hint", "error_description")
               if body.get(k)]
    invalid = [e for v in body.get("validation-errors") or [] if isinstance(v, dict)
               for e in v.get("errors") or [] if isinstance(e, dict)]
    pieces += [" ".join(str(e[k]) for k in ("path", "code", "detail") if _code(e.get(k)))
               for e in invalid]
    message = ": ".join(p for p in pieces if p) or None
    if message and body.get("trace_id"):
        message += f" (trace_id={body['trace_id']})"
    code = _code(err) if isinstance(err, str) else next(
        (_code(e.get("code")) for e in invalid if _code(e.get("code"))), None)
    return ErrorInfo(code, message, body)


def looks_like_html(text: str | bytes) -> bool:
    """True for a body that opens as an HTML document (``<!DOCTYPE html>`` or ``<html>``)."""
    data = text.encode("utf-8", errors="replace") if isinstance(text, str) else text
    return bool(_HTML_START.match(data[:1024]))


def html_title(text: str) -> str | None:
    """The page's ``<title>`` (else its first ``<h1>``) as one line of plain text, or None."""
    for pattern in _HTML_TITLES:
        found = pattern.search(text)
        if found:
            title = " ".join(html.unescape(_HTML_TAG.sub(" ", found.group(1))).split())
            if title:
                return title[:200]
    return None


def describe_html(text: str, status_text: str | None = None) -> str:
    """``HTML page '<title>'``; a page without a title is named by the status text instead, so
    an error never reads ``<html>``."""
    title = html_title(text)
    if title:
        return f"{HTML_PAGE} {title!r}"
    return f"{HTML_PAGE} ({status_text})" if status_text else HTML_PAGE


def parse_error_body(text: str | None) -> ErrorInfo:
    """The code and summary of any source's documented error body (see ``ErrorInfo``).

    One parser for every platform, so an ``ApiError`` names the platform's code and message
    whichever source raised it; an HTML error page from a proxy is named by its title
    (``describe_html``), any other body that is not JSON by its first line.
    """
    if not text or not text.strip():
        return ErrorInfo()
    if looks_like_html(text):
        return ErrorInfo(message=describe_html(text))
    try:
        body = json.loads(text)
    except (ValueError, TypeError):
        return ErrorInfo(message=text.strip().splitlines()[0][:200])
    if not isinstance(body, dict):
        return ErrorInfo()
    if isinstance(body.get("error"), dict):
        return parse_error_object(body["error"])
    if isinstance(body.get("errors"), list) and "error" not in body:
        return _errors_list(body)
    return _problem_or_oauth(body)


def describe_error_body(text: str | None) -> str | None:
    """A one-line summary of an API error body (every source's envelope)."""
    return parse_error_body(text).message


def error_code_of(text: str | None) -> str | None:
    """The platform's error code in an API error body, or None."""
    return parse_error_body(text).code


# --------------------------------------------------------------------------------------------
# Rate limiting
# --------------------------------------------------------------------------------------------


class Limiter(ABC):
    """What every client-side limiter kind shares: the blocking ``acquire`` loop and the
    server-ordered ``pause``. A kind only says how long the next call must wait (``_take``).

    ``clock`` and ``sleep`` pace the limiter's own waits (a fake pair in unit tests); a
    pause the caller waits out itself goes through the caller's (injected) sleep instead.
    """

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self._clock = clock
        self._sleep = sleep
        self._paused_until = 0.0
        self._served_until = 0.0  # pauses up to here were waited out by the caller's sleep
        self._lock = threading.Lock()

    @abstractmethod
    def _take(self, now: float) -> float:
        """Take a slot and return 0, or return the seconds to wait (under the lock)."""

    @abstractmethod
    def _fill(self, now: float) -> None:
        """Use up the whole budget (under the lock)."""

    def _pause_left(self, now: float) -> float:
        if self._paused_until <= self._served_until:
            return 0.0
        return max(0.0, self._paused_until - now)

    def acquire(self) -> float:
        """Block until a call is allowed; return the seconds waited."""
        return self._acquire(in_flight=False)[0]

    @contextmanager
    def slot(self) -> Iterator[None]:
        """A call's turn, held while the call is out: wait for it and send inside. The
        limiter learns when the request went out (``SendStampingAdapter``, the client's
        connections) or, failing that, when the answer came (see ``_sent``)."""
        ticket = self._acquire(in_flight=True)[1]
        _SENDING.note = lambda: self._note_sent(ticket)
        try:
            yield
        finally:
            _SENDING.note = None
            with self._lock:
                self._sent(ticket, self._clock(), final=True)

    def _note_sent(self, ticket: Any) -> None:
        with self._lock:
            self._sent(ticket, self._clock(), final=False)

    def _granted(self, now: float, in_flight: bool) -> Any:
        """Note the call just allowed (under the lock); what ``_sent`` gets back."""
        return None

    def _sent(self, ticket: Any, now: float, final: bool) -> None:  # noqa: B027 - optional
        """The call of ``ticket`` went out (``final``: its slot ended; it went out, or
        failed to, by now) (under the lock)."""

    def _acquire(self, in_flight: bool) -> tuple[float, Any]:
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = self._pause_left(now)
                if wait <= 0:
                    wait = self._take(now)
                    if wait <= 0:
                        return waited, self._granted(now, in_flight)
            wait = max(wait, 0.001)
            self._sleep(wait)
            waited += wait

    def pause(self, seconds: float, sleep: Callable[[float], None] | None = None) -> None:
        """Hold every caller of this limiter for ``seconds`` (the server said Retry-After).

        With ``sleep`` the caller waits the pause out here, through its own injected sleep
        (so a test records the wait instead of sitting through it), and the limiter then
        counts that stretch as served instead of holding the caller a second time.
        """
        with self._lock:
            until = self._clock() + seconds
            self._paused_until = max(self._paused_until, until)
        if sleep is None:
            return
        sleep(seconds)
        with self._lock:
            self._served_until = max(self._served_until, until)

    def saturate(self) -> None:
        """The server said our budget is spent (another client shares it): go at the base
        rate from now on."""
        with self._lock:
            self._fill(self._clock())


class RateLimiter(Limiter):
    """Thread-safe limiter for a server that counts calls in a window: ``rate_per_s`` on
    average, never more than ``ceil(rate_per_s * per)`` calls in any ``per`` seconds.

    ``RateLimiter(7)`` is amoCRM's 7 req/s; ``RateLimiter(2, per=10)`` is Yandex Direct's
    20 requests per 10 s. Two rules hold together:

    - the window: a log of calls allows at most ``capacity`` in ``per + margin_s``. The
      server counts arrivals, which can come later than the grant: a sender that lost the
      interpreter lock after its grant (a collector pass, another thread's C call) sent
      120 ms late, right before the next call on time, and the server saw 8 in its second.
      So a call made through ``slot`` counts from when its request was written to the
      socket (the margin covers the way to the server), or from its answer when the
      connection does not say, and until then as arriving now; a call made after
      ``acquire`` alone counts from its grant;
    - the pace: a virtual schedule (GCRA) one ``1 / rate_per_s`` apart, with a burst of
      ``capacity`` allowed after an idle spell (``burst=False``: none, every call paced).

    The window alone, with ``capacity`` rounded down, turned 6.5 req/s into 6 per 1.05 s
    (5.7 req/s at best) and 100/60 per s into 0.95; rounded up alone it would run above the
    rate. With both, the achieved rate is ``rate_per_s`` whenever the window allows it.
    """

    def __init__(
        self,
        rate_per_s: float,
        per: float = 1.0,
        *,
        margin_s: float = 0.05,
        burst: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0 or per <= 0:
            raise ValueError("rate_per_s and per must be positive")
        super().__init__(clock, sleep)
        self.rate_per_s = rate_per_s
        self.per = per
        self.burst = burst
        self.capacity = max(1, math.ceil(rate_per_s * per - 1e-9))
        self.window = per + margin_s
        self.interval = 1.0 / rate_per_s
        # the burst after idling
        self._tolerance = (self.capacity - 1) * self.interval if burst else 0.0
        self._next_due = clock()  # GCRA's theoretical arrival time of the next call
        # the window's calls: [counted from, not sent yet]; one not sent never leaves it
        self._calls: list[list[Any]] = []

    def _take(self, now: float) -> float:
        self._calls = [c for c in self._calls if c[1] or c[0] > now - self.window]
        pace_wait = self._next_due - self._tolerance - now
        window_wait = 0.0
        if len(self._calls) >= self.capacity:
            sent = [c[0] for c in self._calls if not c[1]]
            # none of them sent yet: look again after one pace interval
            window_wait = min(sent) + self.window - now if sent else self.interval
        wait = max(pace_wait, window_wait)
        if wait > 0:
            return wait
        self._next_due = max(self._next_due, now) + self.interval
        return 0.0

    def _granted(self, now: float, in_flight: bool) -> list[Any]:
        call = [now, in_flight]
        self._calls.append(call)
        return call

    def _sent(self, ticket: list[Any], now: float, final: bool) -> None:
        # counted from the request's last write; from the slot's end when none was reported
        if not final or ticket[1]:
            ticket[0], ticket[1] = now, False

    def _fill(self, now: float) -> None:
        self._calls += [[now, False] for _ in range(self.capacity - len(self._calls))]
        self._next_due = max(self._next_due, now + self._tolerance + self.interval)


class LeakyBucketLimiter(Limiter):
    """Client-side mirror of a server's leaky bucket: +1 per request, drains ``rate_per_s``.

    Bitrix24 counts requests this way (2 req/s drain, burst 50 on standard plans). A request
    waits while the bucket would go over ``capacity``, a margin below the server's burst since
    other clients may share the budget. ``saturate`` marks the bucket full after the server
    said it was (Bitrix24's 503), so the following calls go at the drain rate.
    """

    def __init__(self, rate_per_s: float, burst: int, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst >= 1")
        super().__init__(clock, sleep)
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.capacity = max(1, int(burst * 0.9))
        self._level = 0.0
        self._t = clock()

    def _drain(self, now: float) -> None:
        self._level = max(0.0, self._level - (now - self._t) * self.rate_per_s)
        self._t = now

    def _take(self, now: float) -> float:
        self._drain(now)
        if self._level + 1 <= self.capacity:
            self._level += 1
            return 0.0
        return (self._level + 1 - self.capacity) / self.rate_per_s

    def _fill(self, now: float) -> None:
        self._drain(now)
        self._level = float(self.capacity)


_CANCELLED = threading.Event()


class RequestsCancelled(RuntimeError):
    """The run was interrupted: no further API call is sent (``cancel_requests``)."""


def cancel_requests() -> None:
    """Stop every client of this process at its next call: an interrupted run's extraction
    threads end instead of paging on until their source is exhausted."""
    _CANCELLED.set()


def resume_requests() -> None:
    """Allow calls again (the next run in this process)."""
    _CANCELLED.clear()


def _raise_if_cancelled(source: str, shown: str) -> None:
    if _CANCELLED.is_set():
        raise RequestsCancelled(f"{source}: run interrupted; {shown} not sent")


_LIMITERS: dict[str, Limiter] = {}
_LIMITERS_LOCK = threading.Lock()


def _shared(key: str, shape: tuple[Any, ...], make: Callable[[], Limiter]) -> Limiter:
    """The process-wide limiter under ``key``; a new one when its kind or rates changed."""
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None or _shape_of(limiter) != shape:
            if limiter is not None:
                log.debug("replacing rate limiter for %s with %s", key, shape)
            limiter = _LIMITERS[key] = make()
        return limiter


def _shape_of(limiter: Limiter) -> tuple[Any, ...]:
    if isinstance(limiter, LeakyBucketLimiter):
        return ("bucket", limiter.rate_per_s, limiter.burst)
    return ("window", limiter.rate_per_s, limiter.per, limiter.burst)


def limiter_for(key: str, rate_per_s: float, per: float = 1.0, *,
                burst: bool = True) -> RateLimiter:
    """The process-wide sliding-window limiter for one API account, so all its entities share
    one budget."""
    limiter = _shared(key, ("window", rate_per_s, per, burst),
                      lambda: RateLimiter(rate_per_s, per, burst=burst))
    assert isinstance(limiter, RateLimiter)
    return limiter


def bucket_for(key: str, rate_per_s: float, burst: int) -> LeakyBucketLimiter:
    """The process-wide leaky bucket for one account (a Bitrix24 portal), so all its entities
    share one bucket."""
    limiter = _shared(key, ("bucket", rate_per_s, burst),
                      lambda: LeakyBucketLimiter(rate_per_s, burst))
    assert isinstance(limiter, LeakyBucketLimiter)
    return limiter


_SENDING = threading.local()  # .note: tells this thread's limiter slot its request went out


def _note_sent() -> None:
    note = getattr(_SENDING, "note", None)
    if note is not None:
        note()


class _StampingHTTPConnection(urllib3.connection.HTTPConnection):
    def send(self, data: Any) -> None:
        super().send(data)
        _note_sent()


class _StampingHTTPSConnection(urllib3.connection.HTTPSConnection):
    def send(self, data: Any) -> None:
        super().send(data)
        _note_sent()


class _StampingHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _StampingHTTPConnection


class _StampingHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _StampingHTTPSConnection


class SendStampingAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose connections tell the limiter slot they send in when the
    request's bytes were written (``Limiter.slot``): the moment a server's window counts,
    give or take the way there, whatever held this thread between its turn and the write."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _StampingHTTPPool,
                                                   "https": _StampingHTTPSPool}


def stamping_session() -> requests.Session:
    """A session whose requests report their send time to the limiter slot they go in."""
    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, SendStampingAdapter())
    return session


# --------------------------------------------------------------------------------------------
# HTTP client
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpOptions:
    """Retry/timeout knobs a source passes through to its ``HttpClient`` (tests shrink them)."""

    timeout: tuple[float, float] = (5.0, 30.0)
    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 600.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random | None = None

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "backoff_base": self.backoff_base,
            "backoff_max": self.backoff_max,
            "max_retry_after": self.max_retry_after,
            "sleep": self.sleep,
            "rng": self.rng,
        }


def status_line(status: int) -> str:
    """``503 Service Unavailable`` from the status code alone (the standard phrase)."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def status_text(resp: requests.Response) -> str:
    """``503 Service Unavailable``: the status line, for a body that says nothing."""
    reason = resp.reason if isinstance(resp.reason, str) else ""
    return f"{resp.status_code} {reason}".strip() if reason else status_line(resp.status_code)


def transient_body_problem(resp: requests.Response) -> str | None:
    """Why a 2xx body is not data worth returning, or None when it is.

    A maintenance or captcha page served with 200 by a proxy, and a JSON body cut short (a
    proxy's buffer, a worker killed mid-write), are transient: the caller would otherwise fail
    on the first of them with "response is not JSON" (or, worse, take a partial page).
    An empty body is left to the caller (HTTP 204, Yandex's report-in-progress 201/202).
    """
    content = resp.content or b""
    if not content.strip():
        return None
    ctype = (resp.headers.get("Content-Type") or "").lower()
    if "html" in ctype or looks_like_html(content):
        text = content[:_ERROR_BODY_CHARS].decode("utf-8", errors="replace")
        return f"{describe_html(text, status_text(resp))} instead of data"
    if "json" in ctype or content.lstrip()[:1] in (b"{", b"["):
        try:
            json.loads(content)
        except ValueError as exc:
            where = f" at char {exc.pos} of {len(content)}" if hasattr(exc, "pos") else ""
            return f"a JSON body cut short or malformed{where}"
    return None


class HttpClient:
    """A ``requests`` session with rate limiting, retries, auth refresh and redaction."""

    def __init__(
        self,
        base_url: str,
        *,
        limiter: Limiter | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 600.0,
        auth: Callable[[], dict[str, str]] | None = None,
        on_unauthorized: Callable[[], None] | None = None,
        redact: Iterable[str | None] | Redactor = (),
        source: str = "http",
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
        forbidden_hint: str | None = None,
        on_response: Callable[[requests.Response], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.auth = auth
        self.on_unauthorized = on_unauthorized
        self.redactor = redact if isinstance(redact, Redactor) else Redactor(redact)
        self.source = source
        self.default_headers = dict(headers or {})
        self.forbidden_hint = forbidden_hint
        # sources that adapt to response headers (VK X-RateLimit-*, Meta usage) plug in here
        self.on_response = on_response
        register_redactor(self.redactor)  # urllib3's request logs are scrubbed too
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.session = session or stamping_session()

    # -- helpers ------------------------------------------------------------------------------

    def url_for(self, path_or_url: str) -> str:
        """Absolute URL. Absolute inputs are re-based onto ``base_url`` (scheme + host), so a
        ``next`` link can never send our bearer token to another host."""
        parts = urlsplit(path_or_url)
        if parts.scheme and parts.netloc:
            base = urlsplit(self.base_url)
            return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
        return urljoin(self.base_url + "/", path_or_url.lstrip("/"))

    def safe_url(self, url: str, params: Mapping[str, Any] | None = None) -> str:
        if params:
            req = requests.Request("GET", url, params=dict(params)).prepare()
            url = req.url or url
        return self.redactor.url(url)

    def add_secret(self, secret: str | None) -> None:
        self.redactor.add(secret)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with 'equal jitter': half fixed, half random."""
        cap = min(self.backoff_max, self.backoff_base * (2**attempt))
        return cap / 2 + self._rng.uniform(0, cap / 2)

    def _server_delay(self, resp: requests.Response) -> float | None:
        """Seconds the server asked us to wait, if it said so."""
        for header in ("Retry-After", "retryIn"):
            value = resp.headers.get(header)
            if value is None:
                continue
            value = value.strip()
            try:
                return max(0.0, float(value))
            except ValueError:
                pass
            try:  # HTTP-date form of Retry-After
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
        try:
            body = resp.json()
        except ValueError:
            return None
        if isinstance(body, dict):
            for key in ("retry_after", "retryIn", "retry_in"):
                value = body.get(key)
                if isinstance(value, int | float | str):
                    try:
                        return max(0.0, float(value))
                    except ValueError:
                        continue
        return None

    def _excerpt(self, resp: requests.Response) -> str:
        return self._body_text(resp, _EXCERPT_CHARS * 4)[:_EXCERPT_CHARS]

    def _body_text(self, resp: requests.Response, limit: int = _ERROR_BODY_CHARS) -> str:
        """The redacted start of a response body."""
        try:
            text = resp.content[:limit].decode("utf-8", errors="replace")
        except Exception:  # pragma: no cover - defensive
            text = ""
        return self.redactor(text)

    def error_info(self, resp: requests.Response) -> ErrorInfo:
        """The platform's code and message in a failed response (its redacted body)."""
        return parse_error_body(self._body_text(resp))

    def api_error(
        self,
        resp: requests.Response,
        *,
        attempts: int = 1,
        message: str | None = None,
        cls: type[ApiError] = ApiError,
    ) -> ApiError:
        """The ``ApiError`` for a failed response: source, HTTP status, redacted URL, and the
        platform's code and message as its error envelope says (``parse_error_body``).

        The envelope is parsed from the whole redacted body, not the 500-character excerpt the
        error keeps: Google's and Graph's envelopes are longer than that. ``message`` replaces
        the parsed message (a source adding its own hint).
        """
        info = self.error_info(resp)
        if message is None and info.message == HTML_PAGE:  # an untitled page: say the status
            message = describe_html("", status_text(resp))
        return cls(resp.status_code, self.safe_url(resp.url or self.base_url),
                   self._excerpt(resp), self.source, attempts=attempts, error_code=info.code,
                   message=message or info.message)

    # -- the call -----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        authenticate: bool = True,
        ok_statuses: Iterable[int] = (),
        idempotent: bool = True,
    ) -> requests.Response:
        """Send a request; return the response for any 2xx (or a status in ``ok_statuses``).

        ``authenticate=False`` skips the auth headers and the 401 refresh (the token endpoint
        itself must not recurse into a refresh). ``idempotent=False`` (a create: a task, a
        deal) is not re-sent after a dropped connection or a 5xx, which the server may have
        acted on: it raises, and the caller checks what exists before trying again. A 429 and
        a 401 refresh are still retried (the server did nothing).
        """
        url = self.url_for(path_or_url)
        shown = self.safe_url(url, params)
        accepted = set(ok_statuses)
        attempt = 0  # retries used so far
        refreshed = False
        while True:
            try:
                resp = self._send(method, url, shown, params=params, json=json, data=data,
                                  headers=headers, authenticate=authenticate)
            except DROPPED as exc:
                self._wait_after_drop(exc, method, shown,
                                      attempt if idempotent else self.max_retries)
                attempt += 1
                continue
            status = resp.status_code
            if 200 <= status < 300 or status in accepted:
                problem = transient_body_problem(resp) if 200 <= status < 300 else None
                if problem is None:
                    return resp
                self._wait_after_bad_body(resp, problem, method, shown,
                                          attempt if idempotent else self.max_retries)
                attempt += 1
                continue
            if (status == 401 and authenticate and self.on_unauthorized is not None
                    and not refreshed):
                refreshed = True
                log.info("%s %s -> 401; refreshing credentials and retrying", self.source, shown)
                self.on_unauthorized()
                continue
            if status not in RETRY_STATUSES or (not idempotent and status != 429):
                raise self._final_error(resp, attempt + 1)
            self._wait_to_retry(resp, method, shown, attempt)
            attempt += 1

    def _send(self, method: str, url: str, shown: str, *, authenticate: bool,
              headers: Mapping[str, str] | None, **kwargs: Any) -> requests.Response:
        """One attempt: wait for the limiter, send, and show the response to ``on_response``
        (every response, errors included: rate-limit headers ride on 429s too)."""
        _raise_if_cancelled(self.source, shown)
        hdrs = dict(self.default_headers)
        if authenticate and self.auth is not None:
            # before this call's slot: a token refresh takes its own, instead of going out
            # in this call's slot with this call right behind it (two arrivals at once)
            hdrs.update(self.auth())
        if headers:
            hdrs.update(headers)
        with self.limiter.slot() if self.limiter is not None else nullcontext():
            _raise_if_cancelled(self.source, shown)
            started = time.monotonic()
            resp = self.session.request(method, url, headers=hdrs, timeout=self.timeout,
                                        auth=_NoNetrcAuth(), **kwargs)
        log.debug("%s %s %s -> %s in %.3fs", self.source, method, shown, resp.status_code,
                  time.monotonic() - started)
        if self.on_response is not None:
            self.on_response(resp)
        return resp

    def _wait_after_drop(self, exc: Exception, method: str, shown: str, attempt: int) -> None:
        """Back off after a dropped connection or timeout, or raise once retries are spent."""
        kind = type(exc).__name__
        if attempt >= self.max_retries:
            raise ApiError(
                None, shown, "", self.source, attempts=attempt + 1,
                message=f"{kind}: {self.redactor(str(exc))[:300]}",
            ) from None
        delay = self.backoff(attempt)
        log.warning("%s %s %s failed (%s); retry %d/%d in %.2fs",
                    self.source, method, shown, kind, attempt + 1, self.max_retries, delay)
        self._sleep(delay)

    def _wait_after_bad_body(self, resp: requests.Response, problem: str, method: str,
                             shown: str, attempt: int) -> None:
        """Back off after a 2xx whose body is not the data (an HTML page, JSON cut short): a
        proxy or an overloaded server sent it and the next attempt usually gets the data;
        raise naming the problem once retries are spent."""
        problem = self.redactor(problem)  # a page title is the server's text, not ours
        if attempt >= self.max_retries:
            raise self.api_error(resp, attempts=attempt + 1, message=problem)
        delay = self.backoff(attempt)
        log.warning("%s %s %s -> %s with %s; retry %d/%d in %.2fs", self.source, method, shown,
                    resp.status_code, problem, attempt + 1, self.max_retries, delay)
        self._sleep(delay)

    def _wait_to_retry(self, resp: requests.Response, method: str, shown: str,
                       attempt: int) -> None:
        """Wait before retrying a 429/5xx: the server's delay (held on the shared limiter, so
        every entity of the account waits) or backoff; raise when that is not allowed."""
        server_delay = self._server_delay(resp)
        if server_delay is not None and server_delay > self.max_retry_after:
            raise self.api_error(
                resp, attempts=attempt + 1,
                message=(f"server asked to wait {server_delay:.0f}s, more than "
                         f"max_retry_after={self.max_retry_after:.0f}s; "
                         f"{self.error_info(resp).message or 'rate limited'}"))
        if attempt >= self.max_retries:
            raise self.api_error(resp, attempts=attempt + 1)
        delay = self.backoff(attempt) if server_delay is None else server_delay
        log.warning("%s %s %s -> %s; retry %d/%d in %.2fs%s",
                    self.source, method, shown, resp.status_code, attempt + 1, self.max_retries,
                    delay, " (server-requested)" if server_delay is not None else "")
        if server_delay is not None and self.limiter is not None:
            self.limiter.pause(delay, sleep=self._sleep)
        else:
            self._sleep(delay)

    def _final_error(self, resp: requests.Response, attempts: int) -> ApiError:
        """The error for a status that is not retried; a 403 carries the source's hint."""
        message = None
        if resp.status_code == 403 and self.forbidden_hint:
            message = f"{self.error_info(resp).message or 'forbidden'} ({self.forbidden_hint})"
        return self.api_error(resp, attempts=attempts, message=message)

    def get(self, path_or_url: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path_or_url, **kwargs)

    def post(self, path_or_url: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path_or_url, **kwargs)

    def close(self) -> None:
        self.session.close()


# --------------------------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------------------------


@dataclass
class Page:
    """One page of records as a source yields them.

    ``cursor_after`` is the cursor value that becomes valid once this page and every earlier
    page have landed (None for full-pull entities).
    """

    records: list[RawRecord]
    cursor_after: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class HalPage:
    """One raw page of a HAL collection."""

    number: int
    items: list[dict[str, Any]]
    url: str  # redacted
    body: dict[str, Any]


def iter_hal_pages(
    client: HttpClient,
    path: str,
    params: Mapping[str, Any] | None,
    embedded_key: str,
    *,
    max_pages: int = 100_000,
) -> Iterator[HalPage]:
    """Walk a HAL collection: follow ``_links.next.href``; stop on 204 or when there is no next.

    The next link is re-based onto the client's base URL, and any of the original query
    parameters the link left out (filters, order) are carried over, so a terse link cannot
    silently widen the query.
    """
    original = dict(params or {})
    url: str = path
    query: dict[str, Any] | None = original
    seen: set[str] = set()
    number = 0
    while True:
        number += 1
        if number > max_pages:
            raise ApiError(None, client.safe_url(client.url_for(url), query), "", client.source,
                           message=f"more than {max_pages} pages; giving up (pagination loop?)")
        resp = client.get(url, params=query)
        shown = client.safe_url(client.url_for(url), query)
        if resp.status_code == 204 or not resp.content.strip():
            return
        try:
            body = resp.json()
        except ValueError:
            raise ApiError(
                resp.status_code, shown, client._excerpt(resp), client.source,
                message="response is not JSON",
            ) from None
        if not isinstance(body, dict):
            raise ApiError(resp.status_code, shown, client._excerpt(resp), client.source,
                           message="response is not a JSON object")
        items = (body.get("_embedded") or {}).get(embedded_key)
        if items is None:
            items = []
        if not isinstance(items, list):
            raise ApiError(resp.status_code, shown, "", client.source,
                           message=f"_embedded.{embedded_key} is not a list")
        yield HalPage(number=int(body.get("_page") or number), items=items, url=shown, body=body)

        href = ((body.get("_links") or {}).get("next") or {}).get("href")
        if not href or not items:
            return
        next_parts = urlsplit(client.url_for(href))
        next_query = dict(parse_qsl(next_parts.query, keep_blank_values=True))
        for k, v in original.items():
            next_query.setdefault(k, v)
        key = next_parts.path + "?" + urlencode(sorted(next_query.items()))
        if key in seen:
            raise ApiError(None, shown, "", client.source,
                           message="the next link repeats an earlier page; stopping")
        seen.add(key)
        url = urlunsplit(("", "", next_parts.path, "", ""))
        query = next_query
