"""Google Ads API (REST) source: daily spend by campaign (``campaign_stats``) through GAQL.

API notes: docs reference ``ad_apis.md`` §A3
(https://developers.google.com/google-ads/api/rest/common/search).

- One ``POST /v26/customers/{cid}/googleAds:searchStream`` per date chunk (``chunk_days``) with
  the daily campaign query; the answer is a JSON array of batches of up to 10,000 rows.
- Each result object is landed as received: camelCase, int64 values (``campaign.id``,
  ``metrics.impressions``, ``metrics.clicks``, ``metrics.costMicros``) as strings; money is
  ``costMicros`` in ``customer.currencyCode``; ``customer.timeZone`` rides along.
- ``segments.date`` is the day in the account time zone; the default end date is yesterday
  there. Conversions and cost settle late, so each run re-pulls the last ``settle_days`` days
  before the cursor; landing de-duplicates unchanged rows by payload hash.
- Auth: OAuth refresh-token flow against ``token_url``. Google does not rotate refresh tokens,
  so the access token is only cached in memory (refreshed shortly before ``expires_in`` and on
  a 401). ``login-customer-id`` is sent when access goes through a manager account;
  ``developer-token`` only when given (optional and ignored after the 2026-09-09 sunset).
- ``RESOURCE_TEMPORARILY_EXHAUSTED`` (HTTP 429) is retried after the server's
  ``QuotaErrorDetails.retryDelay`` (``"30s"``); the shared ``HttpClient`` only knows
  ``Retry-After``/``retryIn``, so this module reads 429s itself (``ok_statuses``) and keeps the
  retry loop. ``RESOURCE_EXHAUSTED`` (the daily quota) is not retried. 5xx, drops and timeouts
  are the shared client's business.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import requests

from extractors.http import (
    ApiError,
    AuthorizationError,
    HttpClient,
    HttpOptions,
    Page,
    Redactor,
    limiter_for,
    parse_error_body,
)
from extractors.windows import date_chunks, settling_range
from warehouse.records import RawRecord

log = logging.getLogger("voronka.extractors")

SOURCE = "google_ads"
API_VERSION = "v26"
ACCOUNT_TZ = "Europe/Moscow"
EXPIRY_SKEW_S = 60.0
QUERY_FIELDS = (
    "segments.date", "campaign.id", "campaign.name", "campaign.status",
    "customer.currency_code", "customer.time_zone",
    "metrics.impressions", "metrics.clicks", "metrics.cost_micros",
)
# 429s are read here (retryDelay, and RESOURCE_EXHAUSTED is not retried); the shared client
# raises every other error with the code and message of Google's envelope, and keeps 401 for
# the token refresh.
_READ_STATUSES = (429,)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def normalise_customer_id(value: str | int) -> str:
    """``"123-456-7890"`` → ``"1234567890"``; anything but 10 digits is refused."""
    cid = re.sub(r"[\s-]", "", str(value))
    if not re.fullmatch(r"\d{10}", cid):
        raise ValueError(f"a Google Ads customer id is 10 digits (hyphens allowed), got {value!r}")
    return cid


def parse_duration(value: Any) -> float | None:
    """A protobuf ``Duration`` in JSON (``"30s"``, ``"1.5s"``) as seconds."""
    if isinstance(value, int | float):
        return max(0.0, float(value))
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1))
    return None


def _find_key(obj: Any, key: str) -> Any:
    """The first value stored under ``key`` anywhere in a JSON tree (depth first)."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        children = list(obj.values())
    elif isinstance(obj, list):
        children = obj
    else:
        return None
    for child in children:
        found = _find_key(child, key)
        if found is not None:
            return found
    return None


def parse_google_error(text: str | None) -> tuple[str | None, str, float | None]:
    """``(error code, one-line description, retryDelay seconds)`` of a Google error body.

    Code and description come from the shared envelope parser (the first ``GoogleAdsFailure``
    ``errorCode`` value, else the canonical status). ``retryDelay`` is looked up anywhere in
    ``details`` because its exact JSON nesting is not pinned down in the notes. A truncated
    body (an ``ApiError`` excerpt) falls back to regular expressions.
    """
    if not text:
        return None, "", None
    info = parse_error_body(text)
    if info.fields:
        delay = parse_duration(_find_key(info.fields.get("details"), "retryDelay"))
        return info.code, info.message or "", delay
    m = re.search(r'"(\w+Error)"\s*:\s*"([A-Z_]+)"', text)
    s = re.search(r'"status"\s*:\s*"([A-Z_]+)"', text)
    d = re.search(r'"retryDelay"\s*:\s*"([^"]+)"', text)
    code = m.group(2) if m else (s.group(1) if s else None)
    desc = " ".join(x for x in (s.group(1) if s else None,
                                f"{m.group(1)}={m.group(2)}" if m else None) if x)
    return code, desc or info.message or "", parse_duration(d.group(1)) if d else None


class GoogleAdsSource:
    """Pages of ``RawRecord`` (one page per date chunk) for entity ``campaign_stats``."""

    name = SOURCE
    ENTITIES = ("campaign_stats",)

    def __init__(
        self,
        base_url: str,
        token_url: str,
        *,
        customer_id: str,
        login_customer_id: str | None = None,
        developer_token: str | None = None,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        start_date: date,
        until_date: date | None = None,
        settle_days: int = 14,
        chunk_days: int = 90,
        api_version: str = API_VERSION,
        account_time_zone: str = ACCOUNT_TZ,
        rate_limit_per_s: float = 5.0,
        http_options: HttpOptions | None = None,
    ) -> None:
        if settle_days < 1 or chunk_days < 1:
            raise ValueError("settle_days and chunk_days must be >= 1")
        missing = [n for n, v in (("client_id", client_id), ("client_secret", client_secret),
                                  ("refresh_token", refresh_token)) if not v]
        if missing:
            raise ValueError("Google Ads OAuth needs " + ", ".join(missing))
        self.base_url = base_url.rstrip("/")
        self.token_url = token_url
        self.customer_id = normalise_customer_id(customer_id)
        self.login_customer_id = (normalise_customer_id(login_customer_id)
                                  if login_customer_id else None)
        self.account = self.customer_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.developer_token = developer_token
        self.start_date = start_date
        self.until_date = until_date
        self.settle_days = settle_days
        self.chunk_days = chunk_days
        self.api_version = api_version
        self.tz = ZoneInfo(account_time_zone)
        options = http_options or HttpOptions()
        self._sleep = options.sleep
        self._max_retries = options.max_retries
        self._max_wait = options.max_retry_after
        self._access: str | None = None
        self._expires_at = 0.0
        self._token_lock = threading.Lock()
        self.redactor = Redactor([client_secret, refresh_token, developer_token])
        headers = {"Content-Type": "application/json"}
        if self.login_customer_id:
            headers["login-customer-id"] = self.login_customer_id
        if developer_token:
            headers["developer-token"] = developer_token
        self.limiter = limiter_for(f"google_ads:{self.base_url}:{self.customer_id}",
                                   rate_limit_per_s)
        self.client = HttpClient(
            self.base_url,
            limiter=self.limiter,
            auth=self._auth_headers,
            on_unauthorized=self._on_unauthorized,
            redact=self.redactor,
            source=SOURCE,
            headers=headers,
            **options.client_kwargs(),
        )
        token_parts = urlsplit(token_url)
        self._token_path = token_parts.path or "/"
        self.token_client = HttpClient(
            urlunsplit((token_parts.scheme, token_parts.netloc, "", "", "")),
            redact=self.redactor,
            source=SOURCE,
            **options.client_kwargs(),
        )

    def __repr__(self) -> str:
        return f"GoogleAdsSource(base_url={self.base_url!r}, customer_id={self.customer_id!r})"

    @property
    def stream_path(self) -> str:
        return f"/{self.api_version}/customers/{self.customer_id}/googleAds:searchStream"

    # -- auth ---------------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token()}"}

    def access_token(self) -> str:
        """The cached access token, refreshed shortly before it expires."""
        with self._token_lock:
            if self._access is None or time.time() >= self._expires_at - EXPIRY_SKEW_S:
                self._refresh_locked()
            assert self._access is not None
            return self._access

    def _on_unauthorized(self) -> None:
        with self._token_lock:
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        form = {"grant_type": "refresh_token", "client_id": self.client_id,
                "client_secret": self.client_secret, "refresh_token": self.refresh_token}
        try:
            resp = self.token_client.post(self._token_path, data=form, authenticate=False)
        except ApiError as exc:
            if exc.status in (400, 401, 403):
                raise AuthorizationError(
                    exc.status, exc.url, exc.body_excerpt, SOURCE, error_code=exc.error_code,
                    message=f"Google refused the OAuth refresh ({exc.detail or 'no detail'}); the "
                    "refresh token is revoked or expired, or the client id/secret is wrong: "
                    "re-run the OAuth consent flow and store the new refresh token",
                ) from None
            raise
        try:
            data = resp.json()
        except ValueError:
            data = None
        access = data.get("access_token") if isinstance(data, dict) else None
        if not access:
            raise AuthorizationError(resp.status_code, self.token_client.safe_url(resp.url), "",
                                     SOURCE, message="token response lacks access_token")
        self.redactor.add(access)
        self._access = access
        self._expires_at = time.time() + float(data.get("expires_in") or 3599)
        log.info("Google Ads %s: access token refreshed (expires in %ss)", self.customer_id,
                 data.get("expires_in"))

    # -- planning -----------------------------------------------------------------------------

    def account_today(self) -> date:
        return datetime.now(self.tz).date()

    def date_range(self, cursor: str | None) -> tuple[date, date]:
        """The (first, last) dates a run pulls for ``cursor``; first > last means nothing."""
        until = self.until_date or (self.account_today() - timedelta(days=1))
        first, until = settling_range(cursor, self.start_date, until, self.settle_days)
        return first, until

    def chunks(self, cursor: str | None) -> list[tuple[date, date]]:
        return date_chunks(*self.date_range(cursor), self.chunk_days)

    @staticmethod
    def query(date_from: date, date_to: date) -> str:
        return (f"SELECT {', '.join(QUERY_FIELDS)} FROM campaign "
                f"WHERE segments.date BETWEEN '{date_from.isoformat()}' "
                f"AND '{date_to.isoformat()}' ORDER BY segments.date")

    # -- pages --------------------------------------------------------------------------------

    def pages(self, entity: str, cursor: str | None) -> Iterator[Page]:
        if entity != "campaign_stats":
            raise ValueError(f"unknown Google Ads entity {entity!r}; expected campaign_stats")
        best = date.fromisoformat(cursor) if cursor else None
        for date_from, date_to in self.chunks(cursor):
            batches, retries = self._search_stream(self.query(date_from, date_to))
            records = [self._record(result) for batch in batches
                       for result in batch.get("results") or []]
            if best is None or date_to > best:
                best = date_to
            request_id = next((b.get("requestId") for b in batches if b.get("requestId")), None)
            log.info("Google Ads %s campaign_stats %s..%s: %d rows in %d batches "
                     "(requestId=%s)", self.customer_id, date_from, date_to, len(records),
                     len(batches), request_id)
            yield Page(
                records=records,
                cursor_after=best.isoformat(),
                meta={
                    "date_from": date_from.isoformat(),
                    "date_to": date_to.isoformat(),
                    "batches": len(batches),
                    "request_id": request_id,
                    "quota_retries": retries,
                    "url": self.client.safe_url(self.client.url_for(self.stream_path)),
                },
            )

    def _search_stream(self, query: str) -> tuple[list[dict[str, Any]], int]:
        """POST one searchStream; honour ``retryDelay`` on RESOURCE_TEMPORARILY_EXHAUSTED."""
        retries = 0
        while True:
            try:
                resp = self.client.post(self.stream_path, json={"query": query},
                                        ok_statuses=_READ_STATUSES)
            except AuthorizationError:
                raise
            except ApiError as exc:  # code and message already parsed from the whole body
                raise self._error(exc.status, exc.url, exc.body_excerpt, exc.attempts,
                                  exc.error_code, exc.detail) from None
            if 200 <= resp.status_code < 300:
                return self.parse_stream(resp.text, self._shown(resp)), retries
            body = self.redactor(resp.text)
            code, _, delay = parse_google_error(body)
            if resp.status_code != 429 or code == "RESOURCE_EXHAUSTED":
                raise self._google_api_error(resp.status_code, self._shown(resp), body,
                                             retries + 1)
            if delay is None:
                delay = self.client.backoff(retries)
            if delay > self._max_wait or retries >= self._max_retries:
                error = self._google_api_error(resp.status_code, self._shown(resp), body,
                                               retries + 1)
                if delay > self._max_wait:
                    error = ApiError(429, error.url, error.body_excerpt, SOURCE,
                                     error_code=error.error_code, attempts=error.attempts,
                                     message=f"server asked to wait {delay:.0f}s, more than "
                                     f"max_retry_after={self._max_wait:.0f}s; {error.detail}")
                raise error
            retries += 1
            log.warning("Google Ads %s: HTTP 429 %s; retry %d/%d in %.2fs (retryDelay)",
                        self.customer_id, code, retries, self._max_retries, delay)
            self.limiter.pause(delay, sleep=self._sleep)

    def _shown(self, resp: requests.Response) -> str:
        return self.client.safe_url(resp.url or self.client.url_for(self.stream_path))

    def _google_api_error(self, status: int | None, url: str, body: str,
                          attempts: int) -> ApiError:
        code, detail, _ = parse_google_error(body)
        return self._error(status, url, body, attempts, code, detail)

    def _error(self, status: int | None, url: str, body: str, attempts: int,
               code: str | None, detail: str) -> ApiError:
        """The ApiError of a Google error, with voronka's hint for a permission error; a 401
        after the token refresh is an ``AuthorizationError``."""
        cls = AuthorizationError if status == 401 else ApiError
        if code == "USER_PERMISSION_DENIED":
            detail += (f" [voronka: check login_customer_id (sent: "
                       f"{self.login_customer_id or 'none'}) and access to {self.customer_id}]")
        return cls(status, url, body[:500], SOURCE, error_code=code, attempts=attempts,
                   message=detail or None)

    def parse_stream(self, text: str, url: str = "") -> list[dict[str, Any]]:
        """The batches of a searchStream answer; an error element mid-stream raises."""
        try:
            batches = json.loads(text)
        except ValueError:
            raise ApiError(200, url, self.redactor(text)[:500], SOURCE,
                           message="searchStream answer is not JSON") from None
        if not isinstance(batches, list) or not all(isinstance(b, dict) for b in batches):
            raise ApiError(200, url, self.redactor(text)[:500], SOURCE,
                           message="searchStream answer is not a JSON array of batches")
        for batch in batches:
            if "error" in batch:
                body = self.redactor(json.dumps(batch, ensure_ascii=False))
                raise self._google_api_error(200, url, body, 1)
            results = batch.get("results", [])
            if not isinstance(results, list):
                raise ApiError(200, url, "", SOURCE, message="batch results is not a list")
        return batches

    def _record(self, result: dict[str, Any]) -> RawRecord:
        try:
            day = result["segments"]["date"]
            campaign_id = result["campaign"]["id"]
        except (KeyError, TypeError):
            raise ApiError(200, self.stream_path, json.dumps(result)[:200], SOURCE,
                           message="a result lacks segments.date or campaign.id") from None
        return RawRecord(
            source=SOURCE,
            account=self.customer_id,
            entity="campaign_stats",
            record_id=f"{day}|{campaign_id}",
            payload=result,
            updated_at=None,
        )

    def check_connection(self) -> str:
        """One cheap authenticated call for `voronka doctor`: a one-row campaign query for
        yesterday, after the OAuth refresh a run does first; proves the client, the refresh
        token, the customer id and the manager (login) account."""
        day = (self.account_today() - timedelta(days=1)).isoformat()
        query = ("SELECT segments.date, campaign.id, customer.currency_code FROM campaign "
                 f"WHERE segments.date BETWEEN '{day}' AND '{day}' LIMIT 1")
        batches, _ = self._search_stream(query)
        rows = [r for b in batches for r in b.get("results") or []]
        currency = ((rows[0].get("customer") or {}).get("currencyCode") if rows else None)
        return f"customer {self.customer_id}" + (f", currency {currency}" if currency else "")

    def close(self) -> None:
        self.client.close()
        self.token_client.close()
