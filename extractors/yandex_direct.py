"""Yandex Direct API v5 Reports source: daily spend by campaign (``campaign_stats``).

API notes: docs reference ``ad_apis.md`` §A1 (https://yandex.com/dev/direct/doc/en/mode).

- One ``CAMPAIGN_PERFORMANCE_REPORT`` per date chunk (``chunk_days``), fields ``Date, CampaignId,
  CampaignName, Impressions, Clicks, Cost``, ``IncludeVAT: NO``, money in micros.
- Offline flow: 201/202 + ``retryIn`` → re-send the *identical* request until 200, bounded by
  ``max_polls``. ``ReportName`` is a hash of the spec plus the Moscow "as of" date: identical
  polls reuse the name, a different spec never collides with it, and tomorrow's re-pull of the
  settling days is not answered from a report the server built (and cached) today.
- Statistics settle for about three days, so each run re-pulls the last ``settle_days`` days
  before the cursor; landing de-duplicates unchanged rows by payload hash.
- Dates are Moscow dates; the cursor is the last date pulled, ISO ``YYYY-MM-DD``.
- 20 requests per 10 s per user, shared through ``limiter_for``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from extractors.http import (
    ApiError,
    AuthorizationError,
    HttpClient,
    HttpOptions,
    Page,
    limiter_for,
)
from extractors.windows import date_chunks, settling_range
from warehouse.records import RawRecord

log = logging.getLogger("voronka.extractors")

SOURCE = "yandex_direct"
REPORTS_PATH = "/json/v5/reports"
FIELD_NAMES = ("Date", "CampaignId", "CampaignName", "Impressions", "Clicks", "Cost")
MOSCOW = ZoneInfo("Europe/Moscow")
AUTH_ERROR_CODES = frozenset({"53", "58"})  # invalid/expired OAuth token; access not approved


def moscow_today() -> date:
    return datetime.now(MOSCOW).date()


class YandexDirectSource:
    """Pages of ``RawRecord`` (one page per report chunk) for entity ``campaign_stats``."""

    name = SOURCE
    ENTITIES = ("campaign_stats",)

    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        client_login: str,
        start_date: date,
        until_date: date | None = None,
        settle_days: int = 3,
        chunk_days: int = 92,
        include_vat: bool = False,
        max_polls: int = 60,
        currency: str = "RUB",
        http_options: HttpOptions | None = None,
    ) -> None:
        if settle_days < 1 or chunk_days < 1 or max_polls < 1:
            raise ValueError("settle_days, chunk_days and max_polls must be >= 1")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.client_login = client_login
        self.account = client_login
        self.start_date = start_date
        self.until_date = until_date
        self.settle_days = settle_days
        self.chunk_days = chunk_days
        self.include_vat = include_vat
        self.max_polls = max_polls
        self.currency = currency
        options = http_options or HttpOptions()
        self._sleep = options.sleep
        self._max_wait = options.max_retry_after
        self.client = HttpClient(
            self.base_url,
            limiter=limiter_for(f"yandex_direct:{self.base_url}:{client_login}", 2.0, per=10.0),
            auth=lambda: {"Authorization": f"Bearer {self.token}"},
            redact=[token],
            source=SOURCE,
            headers={
                "Client-Login": client_login,
                "Accept-Language": "en",
                "processingMode": "auto",
                "returnMoneyInMicros": "true",
                "skipReportHeader": "true",
                "skipReportSummary": "true",
                "Content-Type": "application/json; charset=utf-8",
            },
            **options.client_kwargs(),
        )

    def __repr__(self) -> str:
        return f"YandexDirectSource(base_url={self.base_url!r}, client_login={self.client_login!r})"

    # -- planning -----------------------------------------------------------------------------

    def date_range(self, cursor: str | None) -> tuple[date, date]:
        """The (first, last) dates a run pulls for ``cursor``; first > last means nothing."""
        until = self.until_date or (moscow_today() - timedelta(days=1))
        first, until = settling_range(cursor, self.start_date, until, self.settle_days)
        return first, until

    def chunks(self, cursor: str | None) -> list[tuple[date, date]]:
        return date_chunks(*self.date_range(cursor), self.chunk_days)

    def report_spec(self, date_from: date, date_to: date) -> dict[str, Any]:
        params: dict[str, Any] = {
            "SelectionCriteria": {"DateFrom": date_from.isoformat(), "DateTo": date_to.isoformat()},
            "FieldNames": list(FIELD_NAMES),
            "OrderBy": [{"Field": "Date"}],
            "ReportType": "CAMPAIGN_PERFORMANCE_REPORT",
            "DateRangeType": "CUSTOM_DATE",
            "Format": "TSV",
            "IncludeVAT": "YES" if self.include_vat else "NO",
        }
        key = json.dumps(
            {"params": params, "login": self.client_login, "as_of": moscow_today().isoformat()},
            sort_keys=True,
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        params["ReportName"] = (
            f"voronka_campaign_stats_{date_from:%Y%m%d}_{date_to:%Y%m%d}_{digest}"
        )
        return {"params": params}

    # -- pages --------------------------------------------------------------------------------

    def pages(self, entity: str, cursor: str | None) -> Iterator[Page]:
        if entity != "campaign_stats":
            raise ValueError(f"unknown Yandex Direct entity {entity!r}; expected campaign_stats")
        best = date.fromisoformat(cursor) if cursor else None
        for date_from, date_to in self.chunks(cursor):
            body = self.report_spec(date_from, date_to)
            text, polls = self._fetch_report(body)
            rows = self.parse_tsv(text)
            records = [self._record(row) for row in rows]
            if best is None or date_to > best:
                best = date_to
            name = body["params"]["ReportName"]
            log.info("Yandex Direct %s campaign_stats %s..%s: %d rows after %d polls (%s)",
                     self.client_login, date_from, date_to, len(records), polls, name)
            yield Page(
                records=records,
                cursor_after=best.isoformat(),
                meta={
                    "date_from": date_from.isoformat(),
                    "date_to": date_to.isoformat(),
                    "report_name": name,
                    "polls": polls,
                    "url": self.client.safe_url(self.client.url_for(REPORTS_PATH)),
                },
            )

    def _fetch_report(self, body: dict[str, Any]) -> tuple[str, int]:
        """POST the spec until the report is ready (200); return its text and the poll count."""
        polls = 0
        while True:
            try:
                resp = self.client.post(REPORTS_PATH, json=body)
            except ApiError as exc:
                if exc.error_code in AUTH_ERROR_CODES:
                    raise AuthorizationError(
                        exc.status, exc.url, exc.body_excerpt, SOURCE, error_code=exc.error_code,
                        message=f"{exc.detail}; issue a new OAuth token for {self.client_login}",
                    ) from None
                raise
            if resp.status_code == 200:
                return resp.content.decode("utf-8-sig"), polls
            if resp.status_code not in (201, 202):
                raise ApiError(resp.status_code, self.client.safe_url(resp.url), "", SOURCE,
                               message="unexpected success status from the Reports service")
            polls += 1
            if polls > self.max_polls:
                raise ApiError(
                    resp.status_code, self.client.safe_url(resp.url), "", SOURCE,
                    message=f"report {body['params']['ReportName']} still not ready after "
                    f"{self.max_polls} polls",
                )
            try:
                wait = float(resp.headers.get("retryIn", "") or 5)
            except ValueError:
                wait = 5.0
            wait = min(max(wait, 0.0), self._max_wait)
            log.info("Yandex Direct report %s: HTTP %d (queued %s); polling again in %.0fs",
                     body["params"]["ReportName"], resp.status_code,
                     resp.headers.get("reportsInQueue", "?"), wait)
            self._sleep(wait)

    @staticmethod
    def parse_tsv(text: str) -> list[dict[str, str]]:
        """Rows of a Reports TSV as dicts of strings.

        Tolerates a title row and a ``Total rows: N`` summary even though we ask the server to
        skip them; refuses a column header that differs from the requested fields.
        """
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if lines and "\t" not in lines[0] and not lines[0].startswith(FIELD_NAMES[0]):
            lines = lines[1:]  # title row "<ReportName> (<from> - <to>)"
        if lines and lines[-1].startswith("Total rows"):
            lines = lines[:-1]
        if not lines:
            return []
        reader = csv.reader(io.StringIO("\n".join(lines)), delimiter="\t",
                            quoting=csv.QUOTE_NONE)
        header = next(reader)
        if tuple(header) != FIELD_NAMES:
            raise ApiError(200, REPORTS_PATH, "\t".join(header)[:200], SOURCE,
                           message=f"unexpected report columns {header}; expected "
                           f"{list(FIELD_NAMES)}")
        rows = []
        for n, values in enumerate(reader, start=2):
            if len(values) != len(header):
                raise ApiError(200, REPORTS_PATH, "\t".join(values)[:200], SOURCE,
                               message=f"report line {n} has {len(values)} fields, "
                               f"expected {len(header)}")
            rows.append(dict(zip(header, values, strict=True)))
        return rows

    def _record(self, row: dict[str, str]) -> RawRecord:
        payload: dict[str, Any] = dict(row)
        payload["_currency"] = self.currency
        payload["_include_vat"] = "YES" if self.include_vat else "NO"
        payload["_money_in_micros"] = True
        return RawRecord(
            source=SOURCE,
            account=self.client_login,
            entity="campaign_stats",
            record_id=f"{row['Date']}|{row['CampaignId']}",
            payload=payload,
            updated_at=None,
        )

    def check_connection(self) -> str:
        """One cheap authenticated call for `voronka doctor`: ``Clients.get`` proves the token
        and the Client-Login and says the advertiser's currency (a Reports call would queue a
        report). v5 services may answer an error with HTTP 200, so the body is checked too."""
        body = {"method": "get", "params": {"FieldNames": ["Login", "Currency"]}}
        try:
            resp = self.client.post("/json/v5/clients", json=body)
            data = resp.json() if resp.content else None
            if not isinstance(data, dict) or "error" in data:
                raise self.client.api_error(resp)
        except ApiError as exc:
            if exc.error_code in AUTH_ERROR_CODES:
                raise AuthorizationError(
                    exc.status, exc.url, exc.body_excerpt, SOURCE, error_code=exc.error_code,
                    message=exc.detail) from None
            raise
        except ValueError:
            raise ApiError(resp.status_code, self.client.safe_url(resp.url), "", SOURCE,
                           message="Clients.get answer is not JSON") from None
        clients = (data.get("result") or {}).get("Clients") or [{}]
        currency = clients[0].get("Currency") or "?"
        return f"client login {self.client_login}, currency {currency}"

    def close(self) -> None:
        self.client.close()
