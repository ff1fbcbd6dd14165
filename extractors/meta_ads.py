"""Meta Marketing API Ads Insights source: daily spend by campaign (``campaign_insights``).

API notes: docs reference ``ad_apis.md`` §A4
(https://developers.facebook.com/documentation/ads-commerce/marketing-api/insights).

- One request set per date chunk (``chunk_days``): ``level=campaign``, ``time_increment=1``,
  ``time_range={"since","until"}``, fields ``campaign_id, campaign_name, account_currency,
  impressions, clicks, spend, actions, action_values``, ``action_breakdowns=action_type``,
  ``use_unified_attribution_setting=true``.
- Async (default): ``POST /act_<id>/insights`` → ``report_run_id``; poll ``GET /<run_id>`` with
  exponential backoff (polls count against the rate limits) until ``Job Completed``, bounded by
  ``max_polls``; then page ``GET /<run_id>/insights``. ``Job Failed``/``Job Skipped`` is an
  ``ApiError`` carrying the run's v25.0 ``error_*`` fields. Sync: ``GET /act_<id>/insights``.
- Paging follows ``paging.next`` until it is absent. The token travels only in the
  ``Authorization: Bearer`` header (the notes allow either): Graph's ``next`` links repeat it as
  ``access_token=``, so that parameter is stripped from them before they are followed (fewer
  places for it to travel); the shared ``Redactor`` masks ``access_token`` in every URL voronka
  shows, and the shared log filter in ``urllib3``'s request lines.
- Rows land exactly as received: every number, ``spend`` included, is a string in the account
  currency's major units; ``account_currency`` is a field of the row.
- Conversions restate for up to 28 days, so each run re-pulls the last ``settle_days`` days up
  to the cursor; landing de-duplicates unchanged rows by payload hash. The cursor is the last
  date pulled (ISO), dates are in the ad account's time zone (default Europe/Moscow).
- Throttling (Business Use Case limits): every successful response's
  ``X-Business-Use-Case-Usage`` is read (the shared client's ``on_response`` hook) and the next
  call is delayed once any percentage passes ``slowdown_at``; codes 4, 17, 613 and 80000–80014
  wait ``estimated_time_to_regain_access`` minutes (else exponential backoff with jitter) and
  retry. Graph answers these with HTTP 400, which the shared client does not retry, so this
  module accepts 4xx from it and decides on the Graph code the shared layer parses.
- Code 190 (invalid/expired token) → ``AuthorizationError`` asking for a new token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import requests

from extractors.http import (
    ApiError,
    AuthorizationError,
    ErrorInfo,
    HttpClient,
    HttpOptions,
    Page,
    limiter_for,
    parse_error_object,
)
from extractors.windows import date_chunks, settling_range
from warehouse.records import RawRecord

log = logging.getLogger("voronka.extractors")

SOURCE = "meta_ads"
ENTITY = "campaign_insights"
API_VERSION = "v25.0"
FIELDS = ("campaign_id", "campaign_name", "account_currency", "impressions", "clicks", "spend",
          "actions", "action_values")
THROTTLE_CODES = frozenset({4, 17, 613, *range(80000, 80015)})
AUTH_CODES = frozenset({190, 102})  # invalid / expired token; session key invalid
INTERMITTENT = frozenset({(2, 1504043), (2, None), (1, None)})  # "unknown"/"retry later"
SYNC_TIMEOUTS = frozenset({(100, 1504018), (2, 1504038)})
DONE, FAILED = "Job Completed", frozenset({"Job Failed", "Job Skipped"})
_ACCEPTED = (400, 401, 403, 404)  # Graph errors; interpreted here, not in the shared client
_MAX_PAGES = 10_000


def account_today(tz: ZoneInfo) -> date:
    return datetime.now(tz).date()


def _graph_codes(info: ErrorInfo) -> tuple[int | None, int | None]:
    """(code, error_subcode) of a Graph error; Graph codes are integers, other bodies have
    none."""
    code = info.fields.get("code")
    if not isinstance(code, int):
        return None, None
    subcode = info.fields.get("error_subcode")
    return code, subcode if isinstance(subcode, int) else None


def usage_of(headers: Mapping[str, str]) -> tuple[float, float]:
    """(highest usage percentage, estimated minutes to regain access) of a response.

    ``X-Business-Use-Case-Usage`` is ``{"<business object id>": [{"type", "call_count",
    "total_cputime", "total_time", "estimated_time_to_regain_access"}, ...]}``; an absent or
    malformed header reads as no usage.
    """
    raw = headers.get("X-Business-Use-Case-Usage")
    pct = regain = 0.0
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return 0.0, 0.0
    if not isinstance(body, dict):
        return 0.0, 0.0
    for entries in body.values():
        for entry in entries if isinstance(entries, list) else [entries]:
            if not isinstance(entry, dict):
                continue
            for key in ("call_count", "total_cputime", "total_time"):
                try:
                    pct = max(pct, float(entry.get(key) or 0))
                except (TypeError, ValueError):
                    continue
            try:
                regain = max(regain, float(entry.get("estimated_time_to_regain_access") or 0))
            except (TypeError, ValueError):
                continue
    return pct, regain


class MetaAdsSource:
    """Pages of ``RawRecord`` (one page per date chunk) for entity ``campaign_insights``."""

    name = SOURCE
    ENTITIES = (ENTITY,)

    def __init__(
        self,
        base_url: str,
        *,
        ad_account_id: str,
        access_token: str,
        start_date: date,
        until_date: date | None = None,
        settle_days: int = 28,
        chunk_days: int = 30,
        use_async: bool = True,
        max_polls: int = 60,
        http_options: HttpOptions | None = None,
        api_version: str = API_VERSION,
        timezone: str = "Europe/Moscow",
        page_limit: int = 500,
        poll_interval: float = 2.0,
        max_poll_interval: float = 60.0,
        slowdown_at: float = 75.0,
        max_usage_pause: float = 60.0,
    ) -> None:
        if settle_days < 1 or chunk_days < 1 or max_polls < 1:
            raise ValueError("settle_days, chunk_days and max_polls must be >= 1")
        if not 0 < slowdown_at <= 100:
            raise ValueError("slowdown_at is a percentage in (0, 100]")
        digits = ad_account_id.removeprefix("act_")
        self.base_url = base_url.rstrip("/")
        self.ad_account_id = f"act_{digits}"
        self.account = self.ad_account_id
        self.access_token = access_token
        self.start_date = start_date
        self.until_date = until_date
        self.settle_days = settle_days
        self.chunk_days = chunk_days
        self.use_async = use_async
        self.max_polls = max_polls
        self.api_version = api_version
        self.tz = ZoneInfo(timezone)
        self.page_limit = page_limit
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.slowdown_at = slowdown_at
        self.max_usage_pause = max_usage_pause
        options = http_options or HttpOptions()
        self._sleep = options.sleep
        self._max_wait = options.max_retry_after
        self._max_retries = options.max_retries
        self._pending_delay = 0.0
        # BUC limits are dynamic and read from the headers; this is only a ceiling on bursts.
        self.client = HttpClient(
            self.base_url,
            limiter=limiter_for(f"meta_ads:{self.base_url}:{self.ad_account_id}", 100 / 60,
                                per=60.0),
            auth=lambda: {"Authorization": f"Bearer {self.access_token}"},
            redact=[access_token],
            source=SOURCE,
            on_response=self._observe_usage,
            **options.client_kwargs(),
        )

    def __repr__(self) -> str:
        return f"MetaAdsSource(base_url={self.base_url!r}, ad_account_id={self.ad_account_id!r})"

    # -- planning -----------------------------------------------------------------------------

    def date_range(self, cursor: str | None) -> tuple[date, date]:
        """The (first, last) dates a run pulls for ``cursor``; first > last means nothing."""
        until = self.until_date or (account_today(self.tz) - timedelta(days=1))
        first, until = settling_range(cursor, self.start_date, until, self.settle_days)
        return first, until

    def chunks(self, cursor: str | None) -> list[tuple[date, date]]:
        return date_chunks(*self.date_range(cursor), self.chunk_days)

    def query(self, since: date, until: date) -> dict[str, str]:
        return {
            "level": "campaign",
            "time_increment": "1",
            "time_range": json.dumps({"since": since.isoformat(), "until": until.isoformat()},
                                     separators=(",", ":")),
            "fields": ",".join(FIELDS),
            "action_breakdowns": "action_type",
            "use_unified_attribution_setting": "true",
            "limit": str(self.page_limit),
        }

    def _path(self, *parts: str) -> str:
        return "/" + "/".join((self.api_version, *parts))

    # -- pages --------------------------------------------------------------------------------

    def pages(self, entity: str, cursor: str | None) -> Iterator[Page]:
        if entity != ENTITY:
            raise ValueError(f"unknown Meta Ads entity {entity!r}; expected {ENTITY}")
        best = date.fromisoformat(cursor) if cursor else None
        for since, until in self.chunks(cursor):
            meta: dict[str, Any] = {"date_from": since.isoformat(), "date_to": until.isoformat(),
                                    "mode": "async" if self.use_async else "sync"}
            if self.use_async:
                run_id, polls = self._run_report(since, until)
                meta.update(report_run_id=run_id, polls=polls)
                rows, api_pages = self._collect(self._path(run_id, "insights"),
                                                {"limit": str(self.page_limit)})
            else:
                rows, api_pages = self._collect(self._path(self.ad_account_id, "insights"),
                                                self.query(since, until))
            records = [self._record(row) for row in rows]
            if best is None or until > best:
                best = until
            meta["api_pages"] = api_pages
            log.info("Meta Ads %s campaign_insights %s..%s: %d rows in %d pages (%s)",
                     self.ad_account_id, since, until, len(records), api_pages, meta["mode"])
            yield Page(records=records, cursor_after=best.isoformat(), meta=meta)

    def _record(self, row: dict[str, Any]) -> RawRecord:
        try:
            record_id = f"{row['date_start']}|{row['campaign_id']}"
        except KeyError as exc:
            raise ApiError(200, self._path(self.ad_account_id, "insights"),
                           json.dumps(row)[:200], SOURCE,
                           message=f"insights row without {exc.args[0]}") from None
        return RawRecord(source=SOURCE, account=self.ad_account_id, entity=ENTITY,
                         record_id=record_id, payload=row, updated_at=None)

    # -- async report runs --------------------------------------------------------------------

    def _run_report(self, since: date, until: date) -> tuple[str, int]:
        """Create a report run and poll it until ``Job Completed``; return (id, polls)."""
        created = self._call("POST", self._path(self.ad_account_id, "insights"),
                             self.query(since, until))
        run_id = str(created.get("report_run_id") or "")
        if not run_id:
            raise ApiError(200, self.client.safe_url(self.client.url_for(
                self._path(self.ad_account_id, "insights"))), json.dumps(created)[:200], SOURCE,
                message="the async insights call returned no report_run_id")
        polls = 0
        while True:
            run = self._call("GET", self._path(run_id), {})
            polls += 1
            status = run.get("async_status")
            if status == DONE:
                return run_id, polls
            if status in FAILED:
                err = {"code": run.get("error_code"), "error_subcode": run.get("error_subcode"),
                       "message": run.get("error_message"),
                       "error_user_msg": run.get("error_user_msg")}
                err = {k: v for k, v in err.items() if v is not None}
                detail = parse_error_object(err).message if err else "no error details"
                raise ApiError(
                    200, self.client.safe_url(self.client.url_for(self._path(run_id))),
                    "", SOURCE, error_code=str(run.get("error_code", "")) or None,
                    message=f"async report run {run_id} for {since}..{until} ended with "
                    f"{status!r}: {detail}; re-run later (the cursor has not moved past it)",
                )
            if polls >= self.max_polls:
                raise ApiError(
                    200, self.client.safe_url(self.client.url_for(self._path(run_id))), "",
                    SOURCE, message=f"report run {run_id} still {status!r} "
                    f"({run.get('async_percent_completion')}%) after {self.max_polls} polls",
                )
            wait = min(self.poll_interval * 2 ** (polls - 1), self.max_poll_interval)
            log.info("Meta Ads report run %s: %s (%s%%); polling again in %.0fs", run_id,
                     status, run.get("async_percent_completion"), wait)
            self._sleep(wait)

    # -- paging -------------------------------------------------------------------------------

    def _collect(self, path: str, params: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
        """Every row of a paged insights edge: follow ``paging.next`` until it is absent."""
        rows: list[dict[str, Any]] = []
        url: str = path
        query: dict[str, str] | None = params
        seen: set[str] = set()
        pages = 0
        while True:
            pages += 1
            body = self._call("GET", url, query)
            data = body.get("data")
            if not isinstance(data, list):
                raise ApiError(200, self.client.safe_url(self.client.url_for(url), query), "",
                               SOURCE, message="insights response has no data list")
            rows.extend(data)
            nxt = (body.get("paging") or {}).get("next")
            if not nxt or not data:
                return rows, pages
            if nxt in seen or pages >= _MAX_PAGES:
                raise ApiError(None, self.client.safe_url(nxt), "", SOURCE,
                               message="paging.next repeats an earlier page; stopping")
            seen.add(nxt)
            # the next link is absolute and complete; url_for re-bases it onto our base URL,
            # and the token it repeats is dropped (we authenticate with the header)
            parts = urlsplit(nxt)
            kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                    if k != "access_token"]
            url, query = urlunsplit(("", "", parts.path, "", "")), dict(kept)

    # -- one Graph call -----------------------------------------------------------------------

    def _call(self, method: str, path_or_url: str,
              params: Mapping[str, str] | None) -> dict[str, Any]:
        """One Graph call through the shared client, with Graph's error codes handled here."""
        query = dict(params) if params is not None else None
        throttled = 0
        while True:
            if self._pending_delay > 0:
                delay, self._pending_delay = self._pending_delay, 0.0
                log.info("Meta Ads %s: usage near the limit; waiting %.1fs", self.ad_account_id,
                         delay)
                self._sleep(delay)
            resp = self.client.request(method, path_or_url, params=query,
                                       ok_statuses=_ACCEPTED)
            if resp.status_code < 300:
                return self._json(resp)
            wait = self._throttle_wait(resp, method, throttled)
            throttled += 1
            self._sleep(wait)

    def _throttle_wait(self, resp: requests.Response, method: str, throttled: int) -> float:
        """How long to wait before retrying a Graph error; raise when it is not retried."""
        info = self.client.error_info(resp)
        code, subcode = _graph_codes(info)
        if code in AUTH_CODES or (code is None and resp.status_code == 401):
            raise self.client.api_error(
                resp, cls=AuthorizationError,
                message=f"{info.message or 'HTTP 401'}; the access token for "
                f"{self.ad_account_id} is invalid or expired: renew it (a System User token "
                "with ads_read) and update the configuration")
        if code not in THROTTLE_CODES and (code, subcode) not in INTERMITTENT:
            hint = ("; narrow chunk_days or use the async path (use_async=True)"
                    if (code, subcode) in SYNC_TIMEOUTS else "")
            raise self.client.api_error(
                resp, message=f"{info.message or f'HTTP {resp.status_code}'}{hint}")
        regain = usage_of(resp.headers)[1]
        if regain > 0:
            wait, why = regain * 60.0, f"estimated_time_to_regain_access={regain:g} min"
        else:
            wait, why = self.client.backoff(throttled), "backoff"
        if wait > self._max_wait or throttled >= self._max_retries:
            reason = (f"asked to wait {wait:.0f}s, more than max_retry_after="
                      f"{self._max_wait:.0f}s" if wait > self._max_wait
                      else f"still throttled after {throttled + 1} attempts")
            raise self.client.api_error(resp, attempts=throttled + 1,
                                        message=f"{info.message}; {reason}")
        log.warning("Meta Ads %s %s -> code %s/%s; retry %d/%d in %.1fs (%s)", method,
                    self.client.safe_url(resp.url), code, subcode, throttled + 1,
                    self._max_retries, wait, why)
        return wait

    def _observe_usage(self, resp: requests.Response) -> None:
        """The client's ``on_response`` hook: plan a pause before the next call when a
        successful response says usage nears 100% (throttling starts there). A throttled
        response's wait is the retry's business (``_throttle_wait``), not planned twice."""
        if resp.status_code >= 300:
            return
        pct, regain = usage_of(resp.headers)
        if regain > 0:
            self._pending_delay = max(self._pending_delay, min(regain * 60.0, self._max_wait))
        elif pct >= self.slowdown_at:
            span = max(100.0 - self.slowdown_at, 1.0)
            share = min((pct - self.slowdown_at) / span, 1.0)
            delay = max(1.0, self.max_usage_pause * share)
            self._pending_delay = max(self._pending_delay, delay)

    def _json(self, resp: requests.Response) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(resp.status_code, self.client.safe_url(resp.url),
                           self.client.redactor(resp.text)[:200], SOURCE,
                           message="response is not a JSON object")
        return body

    def check_connection(self) -> str:
        """One cheap authenticated call for `voronka doctor`: the ad account node
        (``GET /act_<id>?fields=name,currency,account_status``) proves the token and its access
        to the account."""
        data = self._call("GET", self._path(self.ad_account_id),
                          {"fields": "name,currency,account_status"})
        status = data.get("account_status")
        state = "" if status in (None, 1) else f", account_status {status} (not active)"
        return f"ad account {self.ad_account_id}, currency {data.get('currency') or '?'}{state}"

    def close(self) -> None:
        self.client.close()
