"""The one shared HTTP layer of every voronka extractor.

It owns what every API source needs and no source should re-implement:

- a client-side rate limiter shared by every entity of one API account (``limiter_for``), so a
  normal run never earns a 429 (amoCRM blocks the IP with 403s after repeated 429s);
- retries with exponential backoff and jitter on 429, 5xx, dropped connections and timeouts,
  honouring ``Retry-After``, amoCRM's ``retry_after`` (problem+json body) and Yandex's ``retryIn``;
- one token refresh on 401 through a callback;
- ``ApiError`` with a redacted URL and body excerpt: no token, client secret or refresh token
  ever reaches an exception message or a log line;
- HAL pagination (amoCRM v4: follow ``_links.next.href``; an empty list is HTTP 204).
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
import requests.auth

from warehouse.records import RawRecord

log = logging.getLogger("voronka.extractors")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
SENSITIVE_PARAMS = frozenset(
    {"access_token", "refresh_token", "client_secret", "token", "code", "auth", "password"}
)
_EXCERPT_CHARS = 500


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


def describe_error_body(text: str | None) -> str | None:
    """A one-line summary of an API error body (amoCRM problem+json, Yandex Direct v5)."""
    if not text:
        return None
    try:
        body = json.loads(text)
    except (ValueError, TypeError):
        return text.strip().splitlines()[0][:200] if text.strip() else None
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if isinstance(err, dict):  # Yandex Direct v5
        parts = [f"error_code={err.get('error_code')}"]
        if err.get("error_string"):
            parts.append(str(err["error_string"]))
        if err.get("error_detail"):
            parts.append(str(err["error_detail"]))
        if err.get("request_id"):
            parts.append(f"(request_id={err['request_id']})")
        return " ".join(parts)
    pieces = [str(body[k]) for k in ("title", "detail", "hint") if body.get(k)]
    if isinstance(err, str):  # Bitrix24 / OAuth style {"error": "...", "error_description"}
        pieces.insert(0, err)
        if body.get("error_description"):
            pieces.append(str(body["error_description"]))
    return ": ".join(pieces) or None


def error_code_of(text: str | None) -> str | None:
    try:
        body = json.loads(text or "")
    except (ValueError, TypeError):
        return None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("error_code") is not None:
            return str(err["error_code"])
        if isinstance(err, str):
            return err
    return None


# --------------------------------------------------------------------------------------------
# Rate limiting
# --------------------------------------------------------------------------------------------


class RateLimiter:
    """Thread-safe sliding-window limiter: at most ``rate_per_s * per`` calls in any ``per`` s.

    ``RateLimiter(7)`` is amoCRM's 7 req/s; ``RateLimiter(2, per=10)`` is Yandex Direct's
    20 requests per 10 s. ``margin_s`` widens the window slightly because the server counts
    arrival times, which jitter relative to our send times.
    """

    def __init__(
        self,
        rate_per_s: float,
        per: float = 1.0,
        *,
        margin_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0 or per <= 0:
            raise ValueError("rate_per_s and per must be positive")
        self.rate_per_s = rate_per_s
        self.per = per
        self.capacity = max(1, int(rate_per_s * per))
        self.window = per + margin_s
        self._clock = clock
        self._sleep = sleep
        self._times: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a call is allowed; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._times and self._times[0] <= now - self.window:
                    self._times.popleft()
                wait = self._paused_until - now
                if wait <= 0 and len(self._times) < self.capacity:
                    self._times.append(now)
                    return waited
                if wait <= 0:
                    wait = self._times[0] + self.window - now
            wait = max(wait, 0.001)
            self._sleep(wait)
            waited += wait

    def pause(self, seconds: float) -> None:
        """Hold every caller of this limiter for ``seconds`` (server said Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


_LIMITERS: dict[str, RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(key: str, rate_per_s: float, per: float = 1.0) -> RateLimiter:
    """The process-wide limiter for one API account, so all its entities share one budget."""
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None or (limiter.rate_per_s, limiter.per) != (rate_per_s, per):
            if limiter is not None:
                log.debug("replacing rate limiter for %s with %s/%ss", key, rate_per_s, per)
            limiter = _LIMITERS[key] = RateLimiter(rate_per_s, per)
        return limiter


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


class HttpClient:
    """A ``requests`` session with rate limiting, retries, auth refresh and redaction."""

    def __init__(
        self,
        base_url: str,
        *,
        limiter: RateLimiter | None = None,
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
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.session = session or requests.Session()

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
        try:
            text = resp.content[: _EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
        except Exception:  # pragma: no cover - defensive
            text = ""
        return self.redactor(text)[:_EXCERPT_CHARS]

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
    ) -> requests.Response:
        """Send a request; return the response for any 2xx (or a status in ``ok_statuses``).

        ``authenticate=False`` skips the auth headers and the 401 refresh (the token endpoint
        itself must not recurse into a refresh).
        """
        url = self.url_for(path_or_url)
        shown = self.safe_url(url, params)
        accepted = set(ok_statuses)
        attempt = 0  # retries used so far
        refreshed = False
        while True:
            if self.limiter is not None:
                self.limiter.acquire()
            hdrs = dict(self.default_headers)
            if authenticate and self.auth is not None:
                hdrs.update(self.auth())
            if headers:
                hdrs.update(headers)
            started = time.monotonic()
            try:
                resp = self.session.request(
                    method, url, params=params, json=json, data=data, headers=hdrs,
                    timeout=self.timeout, auth=_NoNetrcAuth(),
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                kind = type(exc).__name__
                if attempt >= self.max_retries:
                    raise ApiError(
                        None, shown, "", self.source, attempts=attempt + 1,
                        message=f"{kind}: {self.redactor(str(exc))[:300]}",
                    ) from None
                delay = self.backoff(attempt)
                attempt += 1
                log.warning(
                    "%s %s %s failed (%s); retry %d/%d in %.2fs",
                    self.source, method, shown, kind, attempt, self.max_retries, delay,
                )
                self._sleep(delay)
                continue

            status = resp.status_code
            elapsed = time.monotonic() - started
            log.debug("%s %s %s -> %s in %.3fs", self.source, method, shown, status, elapsed)
            if 200 <= status < 300 or status in accepted:
                return resp

            if (
                status == 401
                and authenticate
                and self.on_unauthorized is not None
                and not refreshed
            ):
                refreshed = True
                log.info("%s %s -> 401; refreshing credentials and retrying", self.source, shown)
                self.on_unauthorized()
                continue

            body = self._excerpt(resp)
            if status in RETRY_STATUSES:
                server_delay = self._server_delay(resp)
                if server_delay is not None and server_delay > self.max_retry_after:
                    raise ApiError(
                        status, shown, body, self.source, attempts=attempt + 1,
                        error_code=error_code_of(body),
                        message=(
                            f"server asked to wait {server_delay:.0f}s, more than "
                            f"max_retry_after={self.max_retry_after:.0f}s; "
                            f"{describe_error_body(body) or 'rate limited'}"
                        ),
                    )
                if attempt >= self.max_retries:
                    raise ApiError(
                        status, shown, body, self.source, attempts=attempt + 1,
                        error_code=error_code_of(body),
                    )
                if server_delay is not None:
                    delay = server_delay
                    if self.limiter is not None:
                        self.limiter.pause(delay)
                else:
                    delay = self.backoff(attempt)
                attempt += 1
                log.warning(
                    "%s %s %s -> %s; retry %d/%d in %.2fs%s",
                    self.source, method, shown, status, attempt, self.max_retries, delay,
                    " (server-requested)" if server_delay is not None else "",
                )
                self._sleep(delay)
                continue

            message = None
            if status == 403 and self.forbidden_hint:
                message = f"{describe_error_body(body) or 'forbidden'} ({self.forbidden_hint})"
            raise ApiError(
                status, shown, body, self.source, attempts=attempt + 1,
                error_code=error_code_of(body), message=message,
            )

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
