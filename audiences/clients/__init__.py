"""Audience upload clients for Meta, Google (Data Manager API), Yandex Audiences and VK Ads,
and the write clients of amoCRM, Bitrix24 and UniSender (``amocrm.py``, ``bitrix24.py``,
``unisender.py``: CRM marks, tasks and deals, e-mail and SMS lists).

Every client sits on the shared HTTP layer (``extractors.http.HttpClient``): a client-side rate
limiter, retries with backoff on 429/5xx and dropped connections (honouring ``Retry-After``), and
redaction of the token from every log line and exception. The clients accept rows that are
already transformed and hashed for their platform (``audiences.platforms`` builds them); they
never hash or normalise anything themselves, so no raw identifier can reach them by accident
of this layer.

Common interface: ``client.add(audience_id, rows)`` and ``client.remove(audience_id, rows)``
split ``rows`` into batches of the platform's maximum (``max_batch``) and return an
``UploadResult``. A 4xx answer raises ``ApiError`` whose ``source`` names the platform, with
the HTTP status, the platform's own error ``error_code`` and message.

``client_from_env(platform, env)`` builds a platform's client from environment variables
(``audiences.clients.env``; the variables are listed in ``.env.example``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from extractors.http import ApiError, HttpClient, HttpOptions, limiter_for, parse_error_body

log = logging.getLogger("voronka.audiences")

# 4xx answers other than 429 come back from HttpClient.request as responses (not ApiError) so
# a client can read the platform's own error envelope from the raw body: the shared
# Redactor masks lower-case "code" values (VK's ``not_enough_ids``) as if they were OAuth codes.
CLIENT_ERRORS = frozenset(range(400, 500)) - {429}

# A fixed token, or a callable that returns a current one (an OAuth access token it refreshes)
Token = str | Callable[[], str]


@dataclass
class UploadResult:
    """What one ``add``/``remove`` did: the batches sent and what the platform answered."""

    audience_id: str
    operation: str  # "add" | "remove" | "create" | "replace"
    rows: int = 0
    batches: list[int] = field(default_factory=list)  # rows per call, in order
    responses: list[Any] = field(default_factory=list)  # the platform's JSON answers

    @property
    def calls(self) -> int:
        return len(self.batches)


def chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``rows`` in consecutive slices of at most ``size``."""
    if size < 1:
        raise ValueError("batch size must be >= 1")
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _json_body(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


class AudienceClientBase:
    """The HTTP plumbing every audience client shares (not a public API of its own)."""

    source = "audiences"
    max_batch = 10_000

    def __init__(self, base_url: str, token: Token, *, rate_limit_per_s: float | None,
                 http_options: HttpOptions | None, auth_scheme: str = "Bearer",
                 limiter_key: str | None = None, rate_window_s: float = 1.0) -> None:
        if not token:
            raise ValueError(f"{self.source} needs a token")
        self.base_url = base_url.rstrip("/")
        self._token_source = token
        self._secrets: set[str] = {token} if isinstance(token, str) else set()
        self._auth_scheme = auth_scheme
        self._closers: list[Callable[[], None]] = []
        options = http_options or HttpOptions()
        self._sleep = options.sleep
        self._max_retries = options.max_retries
        limiter = None
        if rate_limit_per_s:
            limiter = limiter_for(limiter_key or f"{self.source}:{self.base_url}",
                                  rate_limit_per_s, per=rate_window_s)
        self.http = HttpClient(
            self.base_url,
            limiter=limiter,
            auth=self._auth_headers,
            redact=list(self._secrets),
            source=self.source,
            headers={"Accept": "application/json"},
            on_response=self._on_response,
            **options.client_kwargs(),
        )

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def add_secret(self, secret: str | None) -> None:
        """Mask ``secret`` (a client secret, a refresh token) wherever this client reports."""
        if secret and len(secret) >= 4:
            self._secrets.add(secret)
            self.http.add_secret(secret)

    def _token(self) -> str:
        """The token to send now; a provider's fresh token is masked before its first use."""
        if isinstance(self._token_source, str):
            return self._token_source
        token = self._token_source()
        if token not in self._secrets:
            self.add_secret(token)
        return token

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"{self._auth_scheme} {self._token()}"}

    def _on_response(self, resp: requests.Response) -> None:
        """Hook for rate-limit headers (VK); nothing by default."""

    def on_close(self, closer: Callable[[], None]) -> None:
        """Close ``closer``'s owner with this client (the token's source)."""
        self._closers.append(closer)

    def close(self) -> None:
        self.http.close()
        for closer in self._closers:
            closer()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls --------------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send through the shared layer (429/5xx/dropped connections retried there); a 4xx
        the platform means as "retry later" (``_is_transient``) is retried here with the same
        backoff; any other 4xx becomes an ``ApiError`` naming the platform's code and message.
        Returns the JSON answer (or None)."""
        attempt = 0
        while True:
            resp = self.http.request(method, path, ok_statuses=CLIENT_ERRORS, **kwargs)
            if resp.status_code < 400:
                return _json_body(resp)
            if not self._is_transient(resp) or attempt >= self._max_retries:
                raise self._error(resp, attempts=attempt + 1)
            delay = self.http.backoff(attempt)
            log.warning("%s %s %s -> %s (%s); retry %d/%d in %.2fs", self.source, method,
                        self.http.safe_url(resp.url or path), resp.status_code,
                        self._error_fields(_json_body(resp), "")[0], attempt + 1,
                        self._max_retries, delay)
            self._sleep(delay)
            attempt += 1

    def _unexpected(self, path: str, what: str) -> ApiError:
        """A 2xx answer that lacks what the call exists for (the new object's id)."""
        return ApiError(200, self.http.safe_url(self.http.url_for(path)), "", self.source,
                        message=what)

    def _is_transient(self, resp: requests.Response) -> bool:
        """A 4xx that means "retry later" on this platform (Meta's throttling codes)."""
        return False

    def _error_fields(self, body: Any, text: str) -> tuple[str | None, str | None]:
        """(code, message) of an error body; the shared parser knows every platform's envelope
        (Graph, google.rpc.Status, Yandex Audiences' ``errors``, VK's ``error.fields``)."""
        info = parse_error_body(text)
        return info.code, info.message

    def _error(self, resp: requests.Response, attempts: int = 1) -> ApiError:
        raw = resp.content[:65_536].decode("utf-8", errors="replace")
        code, message = self._error_fields(_json_body(resp), raw)
        if message:  # only the secrets are masked: the shared patterns would mask "code=17"
            for secret in sorted(self._secrets, key=len, reverse=True):
                message = message.replace(secret, "***")
        return ApiError(
            resp.status_code,
            self.http.safe_url(resp.url or self.base_url),
            self.http.redactor(raw)[:500],
            self.source,
            message=message,
            error_code=code,
            attempts=attempts,
        )


__all__ = [
    "CLIENT_ERRORS",
    "AmoCRMWriteClient",
    "ApiError",
    "AudienceClientBase",
    "Bitrix24WriteClient",
    "GoogleAudienceClient",
    "HttpOptions",
    "MetaAudienceClient",
    "UniSenderClient",
    "UploadResult",
    "VKAudienceClient",
    "YandexAudienceClient",
    "chunks",
    "client_from_env",
]


def __getattr__(name: str) -> Any:  # lazy: the platform modules import this one
    if name == "client_from_env":
        from .env import client_from_env
        return client_from_env
    if name == "MetaAudienceClient":
        from .meta import MetaAudienceClient
        return MetaAudienceClient
    if name == "GoogleAudienceClient":
        from .google import GoogleAudienceClient
        return GoogleAudienceClient
    if name == "YandexAudienceClient":
        from .yandex import YandexAudienceClient
        return YandexAudienceClient
    if name == "VKAudienceClient":
        from .vk import VKAudienceClient
        return VKAudienceClient
    if name == "AmoCRMWriteClient":
        from .amocrm import AmoCRMWriteClient
        return AmoCRMWriteClient
    if name == "Bitrix24WriteClient":
        from .bitrix24 import Bitrix24WriteClient
        return Bitrix24WriteClient
    if name == "UniSenderClient":
        from .unisender import UniSenderClient
        return UniSenderClient
    raise AttributeError(name)

