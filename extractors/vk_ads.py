"""VK Ads (ads.vk.com, formerly myTarget) API v2 source: ad plans and daily spend per ad plan.

API notes: docs reference ``ad_apis.md`` §A2 (https://ads.vk.com/doc/api/info/Statistics).

- **Auth**: ``grant_type=client_credentials`` at ``/api/v2/oauth2/token.json`` (form-encoded).
  A cabinet holds at most 5 live tokens, so the token is cached in a ``TokenStore`` (atomic
  write, file lock) and reused by every run and worker; when it expires it is renewed with its
  refresh token (which keeps the slot) and only then with a new client_credentials grant. A 401
  forces one renewal and one retry (the shared layer's ``on_unauthorized``).
- **Entities**: ``ad_plans`` (campaigns, a full pull each run, ``limit=50`` + ``offset``,
  deleted plans included) and ``ad_plan_stats`` (``GET /api/v2/statistics/ad_plans/day.json``,
  ``metrics=base``): one record per (date, ad plan), the ``base`` metric object as received
  (``spent``/``cpm``/``cpc`` stay decimal strings) plus ``_currency``.
- **Limits**: at most 200 ids and 366 days back per statistics request (``ERR_LIMIT_EXCEEDED``
  otherwise): ids are sent in chunks of ``ids_per_request``, dates in ``chunk_days`` windows,
  and history older than 365 days is clamped with a warning (one day of margin).
- **Cursor**: the last date pulled (ISO, a Moscow date). Each run re-pulls the trailing
  ``settle_days`` days ending at the cursor; landing de-duplicates unchanged rows.
- **Rate limits**: a client-side limiter shared per client_id (``limiter_for``), lowered to the
  ``X-RateLimit-RPS-Limit`` the API reports; a ``…-Remaining: 0`` header holds the limiter until
  that calendar period ends, so a normal run makes no 429. The headers are read by the shared
  client's ``on_response`` hook on every response; a 429 is retried by the shared layer.
- **Errors** ``{"error": {"code": "ERR_…", "message": …}}`` are parsed by the shared layer
  (``ApiError.error_code`` is the ``ERR_*`` code); this module adds the notes' hints and, where
  a body names no code, the one the notes' table gives for the status.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import requests

from extractors.http import (
    ApiError,
    AuthorizationError,
    HttpClient,
    HttpOptions,
    Page,
    limiter_for,
)
from extractors.state import TokenSet, TokenStore
from extractors.windows import date_chunks, settling_range
from warehouse.records import RawRecord

log = logging.getLogger("voronka.extractors")

SOURCE = "vk_ads"
TOKEN_PATH = "/api/v2/oauth2/token.json"
AD_PLANS_PATH = "/api/v2/ad_plans.json"
STATS_PATH = "/api/v2/statistics/ad_plans/day.json"
AD_PLAN_FIELDS = "id,name,status,created,updated"
ALL_STATUSES = "active,blocked,deleted"
MAX_IDS_PER_REQUEST = 200
MAX_DAYS_BACK = 366
HISTORY_DAYS = MAX_DAYS_BACK - 1  # one day of margin for the API's notion of "now"
MAX_LIST_LIMIT = 50
EXPIRY_SKEW_S = 300.0
MOSCOW = ZoneInfo("Europe/Moscow")
ERROR_HINTS = {
    "ERR_LIMIT_EXCEEDED": "VK Ads allows at most 200 objects and 366 days back per statistics "
    "request, and 5 active tokens per cabinet",
    "ERR_WRONG_ADPLANS": "some ad plan ids are missing or not accessible to this cabinet",
    "ERR_ACCESS_DENIED": "the token is invalid, expired or lacks rights",
}

# the code the notes' error table gives for a status whose body names none
FALLBACK_CODES = {401: "ERR_ACCESS_DENIED", 403: "ERR_ACCESS_DENIED"}

# X-RateLimit-RPS-Limit values reported by the API, per limiter key (shared by all instances)
_REPORTED_RPS: dict[str, float] = {}
_REPORTED_LOCK = threading.Lock()


def moscow_today() -> date:
    return datetime.now(MOSCOW).date()


class VKAdsSource:
    """Pages of ``RawRecord`` for ``ad_plans`` and ``ad_plan_stats``; see the module docstring."""

    name = SOURCE
    ENTITIES = ("ad_plans", "ad_plan_stats")

    def __init__(
        self,
        base_url: str,
        *,
        account: str,
        client_id: str,
        client_secret: str,
        token_store: TokenStore,
        start_date: date,
        until_date: date | None = None,
        settle_days: int = 7,
        chunk_days: int = 92,
        ids_per_request: int = MAX_IDS_PER_REQUEST,
        page_limit: int = MAX_LIST_LIMIT,
        rate_limit_per_s: float = 5.0,
        currency: str = "RUB",
        http_options: HttpOptions | None = None,
        today: date | None = None,
    ) -> None:
        missing = [n for n, v in (("client_id", client_id), ("client_secret", client_secret),
                                  ("token_store", token_store)) if not v]
        if missing:
            raise ValueError("VK Ads needs " + ", ".join(missing))
        if settle_days < 1 or not 1 <= chunk_days <= MAX_DAYS_BACK:
            raise ValueError(f"settle_days must be >= 1 and chunk_days 1..{MAX_DAYS_BACK}")
        if not 1 <= ids_per_request <= MAX_IDS_PER_REQUEST:
            raise ValueError(f"ids_per_request must be 1..{MAX_IDS_PER_REQUEST} (VK Ads limit)")
        if not 1 <= page_limit <= MAX_LIST_LIMIT:
            raise ValueError(f"page_limit must be 1..{MAX_LIST_LIMIT} (VK Ads limit)")
        self.base_url = base_url.rstrip("/")
        self.account = account
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_store = token_store
        self.start_date = start_date
        self.until_date = until_date
        self.settle_days = settle_days
        self.chunk_days = chunk_days
        self.ids_per_request = ids_per_request
        self.page_limit = page_limit
        self.rate_limit_per_s = float(rate_limit_per_s)
        self.currency = currency
        self._today = today  # None: today in Moscow; fixed in the demo's simulated calendar
        self._tokens: TokenSet | None = None
        self._max_wait = (http_options or HttpOptions()).max_retry_after
        self._limiter_key = f"vk_ads:{self.base_url}:{client_id}"
        options = http_options or HttpOptions()
        self.client = HttpClient(
            self.base_url,
            limiter=limiter_for(self._limiter_key, self._effective_rps()),
            auth=self._auth_headers,
            on_unauthorized=self._on_unauthorized,
            redact=[client_secret],
            source=SOURCE,
            headers={"Accept": "application/json", "Accept-Encoding": "gzip"},
            on_response=self._observe_limits,
            **options.client_kwargs(),
        )

    def __repr__(self) -> str:
        return f"VKAdsSource(base_url={self.base_url!r}, account={self.account!r})"

    # -- auth ---------------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token()}"}

    def access_token(self) -> str:
        """A usable access token: cached, stored, refreshed, or newly granted (in that order)."""
        tokens = self._tokens
        if tokens is None or not tokens.access_valid(skew_s=EXPIRY_SKEW_S):
            tokens = self._obtain(stale_access=tokens.access_token if tokens else None)
        assert tokens.access_token is not None
        return tokens.access_token

    def _on_unauthorized(self) -> None:
        stale = self._tokens.access_token if self._tokens else None
        self._obtain(stale_access=stale, force=True)

    def _obtain(self, *, stale_access: str | None, force: bool = False) -> TokenSet:
        """Under the store's lock: reuse a stored valid token (another worker's, too), else
        refresh the stored one, else a new client_credentials grant; save before use."""
        store = self.token_store
        with store.lock():
            stored = store.load()
            if stored is not None:
                for t in (stored.access_token, stored.refresh_token):
                    self.client.add_secret(t)
                fresh_elsewhere = stored.access_token != stale_access
                if stored.access_valid(skew_s=EXPIRY_SKEW_S) and (not force or fresh_elsewhere):
                    self._tokens = stored
                    return stored
            tokens = None
            if stored is not None and stored.refresh_token:
                try:
                    tokens = self._grant({"grant_type": "refresh_token",
                                          "refresh_token": stored.refresh_token})
                except AuthorizationError as exc:
                    log.info("VK Ads %s: refresh token refused (%s); requesting a new token",
                             self.account, exc.detail)
            if tokens is None:
                tokens = self._grant({"grant_type": "client_credentials"})
            store.save(tokens)
            self._tokens = tokens
            log.info("VK Ads %s: access token obtained; saved to %s", self.account, store.path)
            return tokens

    def _grant(self, form: dict[str, str]) -> TokenSet:
        body = {**form, "client_id": self.client_id, "client_secret": self.client_secret}
        grant = form["grant_type"]
        try:
            resp = self._call("POST", TOKEN_PATH, data=body, authenticate=False)
        except ApiError as err:
            if err.status in (400, 401, 403):
                hint = ""
                if err.error_code == "ERR_LIMIT_EXCEEDED":
                    hint = ("; the cabinet already has 5 active tokens: delete old ones "
                            "(POST /api/v2/oauth2/token/delete.json) or keep using the stored "
                            f"token in {self.token_store.path}")
                raise AuthorizationError(
                    err.status, err.url, err.body_excerpt, SOURCE, error_code=err.error_code,
                    message=f"VK Ads refused the {grant} grant: {err.detail}{hint}",
                ) from None
            raise
        try:
            data = resp.json()
        except ValueError:
            data = None
        access = data.get("access_token") if isinstance(data, dict) else None
        if not access:
            raise AuthorizationError(resp.status_code, self.client.safe_url(resp.url), "",
                                     SOURCE, message="token response lacks access_token")
        refresh = data.get("refresh_token")
        self.client.add_secret(access)
        self.client.add_secret(refresh)
        expires_in = float(data.get("expires_in") or 86400)
        return TokenSet(access, refresh, time.time() + expires_in)

    # -- HTTP ---------------------------------------------------------------------------------

    def _effective_rps(self) -> float:
        with _REPORTED_LOCK:
            reported = _REPORTED_RPS.get(self._limiter_key)
        return min(self.rate_limit_per_s, reported) if reported else self.rate_limit_per_s

    def _translate(self, exc: ApiError) -> ApiError:
        """The shared layer's ApiError with the notes' hint for its ``ERR_*`` code. The shared
        redactor masks a JSON ``"code"`` that does not look like an error name (OAuth codes
        are secrets), so where the body lost it the code comes from the status, as the notes'
        error table gives it."""
        if isinstance(exc, AuthorizationError) or exc.status is None:
            return exc
        code = exc.error_code or FALLBACK_CODES.get(exc.status) or (
            "ERR_INTERNAL" if exc.status >= 500 else None)
        if code is None:
            return exc
        detail = exc.detail or "error"
        if not detail.startswith(code):
            detail = f"{code}: {detail}"
        if code in ERROR_HINTS:
            detail += f" ({ERROR_HINTS[code]})"
        cls = AuthorizationError if exc.status == 401 else ApiError
        return cls(exc.status, exc.url, exc.body_excerpt, SOURCE, message=detail,
                   error_code=code, attempts=exc.attempts)

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request through the shared layer; its ApiError gains the ``ERR_*`` hints."""
        try:
            return self.client.request(method, path, **kwargs)
        except ApiError as exc:
            raise self._translate(exc) from None

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        resp = self._call("GET", path, params=params)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(resp.status_code, self.client.safe_url(resp.url),
                           self.client._excerpt(resp), SOURCE,
                           message="response is not a JSON object")
        return body

    def _observe_limits(self, resp: requests.Response) -> None:
        """The client's ``on_response`` hook: adopt the reported per-second limit; hold the
        limiter when a budget is spent (every response carries the X-RateLimit headers)."""
        try:
            rps = float(resp.headers.get("X-RateLimit-RPS-Limit", "") or 0)
        except ValueError:
            rps = 0.0
        if rps >= 1 and rps < self.client.limiter.rate_per_s:  # type: ignore[union-attr]
            with _REPORTED_LOCK:
                _REPORTED_RPS[self._limiter_key] = rps
            log.info("VK Ads %s: server allows %g requests/s; slowing down", self.account, rps)
            self.client.limiter = limiter_for(self._limiter_key, rps)
            self.client.limiter.acquire()  # count the request that told us
        now = time.time()
        for kind in ("RPS", "Hourly", "Daily"):
            remaining = resp.headers.get(f"X-RateLimit-{kind}-Remaining")
            if remaining is None or remaining.strip() != "0":
                continue
            if kind == "RPS":
                wait = math.floor(now) + 1 - now + 0.05
            elif kind == "Hourly":
                wait = (math.floor(now / 3600) + 1) * 3600 - now + 1
            else:
                tomorrow = datetime.combine(moscow_today() + timedelta(days=1),
                                            datetime.min.time(), MOSCOW)
                wait = tomorrow.timestamp() - now + 1
            if wait > self._max_wait:
                log.warning("VK Ads %s: %s request budget spent; it resets in %.0fs",
                            self.account, kind.lower(), wait)
            log.debug("VK Ads %s: %s budget spent; holding requests %.2fs", self.account,
                      kind, wait)
            self.client.limiter.pause(min(wait, self._max_wait))  # type: ignore[union-attr]

    # -- planning -----------------------------------------------------------------------------

    def today(self) -> date:
        """The calendar the 366-day history limit counts from."""
        return self._today or moscow_today()

    def earliest_date(self) -> date:
        """The oldest day the statistics API still serves (with one day of margin)."""
        return self.today() - timedelta(days=HISTORY_DAYS)

    def date_range(self, cursor: str | None) -> tuple[date, date]:
        """The (first, last) dates a run pulls for ``cursor``; first > last means nothing."""
        until = self.until_date or (self.today() - timedelta(days=1))
        first, until = settling_range(cursor, self.start_date, until, self.settle_days)
        earliest = self.earliest_date()
        if first < earliest:
            log.warning("VK Ads %s: statistics go back at most %d days; clamping %s to %s",
                        self.account, MAX_DAYS_BACK, first, earliest)
            first = earliest
        return first, until

    def chunks(self, cursor: str | None) -> list[tuple[date, date]]:
        return date_chunks(*self.date_range(cursor), self.chunk_days)

    # -- pages --------------------------------------------------------------------------------

    def pages(self, entity: str, cursor: str | None) -> Iterator[Page]:
        if entity == "ad_plans":
            yield from self._ad_plan_pages()
        elif entity == "ad_plan_stats":
            yield from self._stats_pages(cursor)
        else:
            raise ValueError(f"unknown VK Ads entity {entity!r}; expected one of {self.ENTITIES}")

    def _ad_plan_pages(self) -> Iterator[Page]:
        offset = 0
        number = 0
        while True:
            number += 1
            params = {"fields": AD_PLAN_FIELDS, "limit": self.page_limit, "offset": offset,
                      "_status__in": ALL_STATUSES}
            body = self._get(AD_PLANS_PATH, params)
            items = body.get("items")
            if not isinstance(items, list):
                raise ApiError(200, self.client.safe_url(self.client.url_for(AD_PLANS_PATH),
                                                         params), "", SOURCE,
                               message="ad_plans response has no items list")
            records = []
            for item in items:
                if not isinstance(item, dict) or item.get("id") is None:
                    raise ApiError(200, AD_PLANS_PATH, str(item)[:200], SOURCE,
                                   message="ad plan without an id")
                records.append(RawRecord(source=SOURCE, account=self.account, entity="ad_plans",
                                         record_id=str(item["id"]), payload=item,
                                         updated_at=None))
            count = int(body.get("count") or 0)
            log.info("VK Ads %s ad_plans offset %d: %d of %d", self.account, offset,
                     len(records), count)
            yield Page(records=records, cursor_after=None,
                       meta={"page": number, "offset": offset, "count": count})
            offset += len(items)
            if not items or offset >= count:
                return

    def ad_plan_ids(self) -> list[int]:
        """Every ad plan id of the cabinet, deleted ones included (they have history)."""
        return sorted({int(r.record_id) for p in self._ad_plan_pages() for r in p.records})

    def _stats_pages(self, cursor: str | None) -> Iterator[Page]:
        best = date.fromisoformat(cursor) if cursor else None
        chunks = self.chunks(cursor)
        if not chunks:
            return
        ids = self.ad_plan_ids()
        batches = [ids[i:i + self.ids_per_request]
                   for i in range(0, len(ids), self.ids_per_request)] or [[]]
        for date_from, date_to in chunks:
            for n, batch in enumerate(batches, start=1):
                records: list[RawRecord] = []
                if batch:
                    params = {"date_from": date_from.isoformat(), "date_to": date_to.isoformat(),
                              "id": ",".join(str(i) for i in batch), "metrics": "base",
                              "attribution": "conversion"}
                    body = self._get(STATS_PATH, params)
                    records = self._stats_records(body, set(batch), date_from, date_to)
                if n == len(batches) and (best is None or date_to > best):
                    best = date_to  # valid only once every id batch of the window has landed
                log.info("VK Ads %s ad_plan_stats %s..%s ids batch %d/%d: %d rows",
                         self.account, date_from, date_to, n, len(batches), len(records))
                yield Page(
                    records=records,
                    cursor_after=best.isoformat() if best else None,
                    meta={"date_from": date_from.isoformat(), "date_to": date_to.isoformat(),
                          "ids_batch": n, "ids": len(batch)},
                )

    def _stats_records(self, body: dict[str, Any], asked: set[int], date_from: date,
                       date_to: date) -> list[RawRecord]:
        items = body.get("items")
        if not isinstance(items, list):
            raise ApiError(200, STATS_PATH, str(body)[:200], SOURCE,
                           message="statistics response has no items list")
        lo, hi = date_from.isoformat(), date_to.isoformat()
        records = []
        for item in items:
            if not isinstance(item, dict) or item.get("id") is None \
                    or not isinstance(item.get("rows"), list):
                raise ApiError(200, STATS_PATH, str(item)[:200], SOURCE,
                               message="statistics item without id/rows")
            plan_id = item["id"]
            if int(plan_id) not in asked:
                raise ApiError(200, STATS_PATH, str(plan_id), SOURCE,
                               message=f"statistics for ad plan {plan_id} that was not asked for")
            for row in item["rows"]:
                day = row.get("date") if isinstance(row, dict) else None
                if not isinstance(day, str) or not isinstance(row.get("base"), dict):
                    raise ApiError(200, STATS_PATH, str(row)[:200], SOURCE,
                                   message=f"ad plan {plan_id}: row without date/base")
                if not lo <= day[:10] <= hi:
                    raise ApiError(200, STATS_PATH, day, SOURCE,
                                   message=f"ad plan {plan_id}: row dated {day} outside "
                                   f"{lo}..{hi}")
                records.append(RawRecord(
                    source=SOURCE,
                    account=self.account,
                    entity="ad_plan_stats",
                    record_id=f"{day}|{plan_id}",
                    payload={"date": day, "ad_plan_id": plan_id, "base": row["base"],
                             "_currency": self.currency},
                    updated_at=None,
                ))
        return records

    def check_connection(self) -> str:
        """One cheap authenticated call for `voronka doctor`: one ad plan id, with the token
        from the shared store (or a new grant, as a run would), proving the client id and
        secret; says how many ad plans the cabinet has."""
        body = self._get(AD_PLANS_PATH, {"fields": "id", "limit": 1,
                                         "_status__in": ALL_STATUSES})
        return f"cabinet {self.account}, {int(body.get('count') or 0)} ad plans"

    def close(self) -> None:
        self.client.close()
