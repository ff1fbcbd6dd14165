"""Local emulator of the Yandex Direct API v5 Reports service (CAMPAIGN_PERFORMANCE_REPORT).

Faithful to the notes in ad_apis.md §A1: POST /json/v5/reports, offline flow 201 → 202 → 200 with
``retryIn``, TSV output with optional title/header/summary rows, money in micros by default,
``IncludeVAT``, error bodies ``{"error": {request_id, error_code, error_string, error_detail}}``
and the 20 requests / 10 s limit.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ._base import EmulatorServer, Fault, Request, Response, SlidingWindow

REPORTS_PATH = "/json/v5/reports"
CLIENTS_PATH = "/json/v5/clients"  # Clients.get only: the advertiser's login and currency
SUPPORTED_FIELDS = ("Date", "CampaignId", "CampaignName", "Impressions", "Clicks", "Cost")
REQUIRED_PARAMS = ("SelectionCriteria", "FieldNames", "ReportName", "ReportType",
                   "DateRangeType", "Format", "IncludeVAT")
REPORT_TYPES = ("ACCOUNT_PERFORMANCE_REPORT", "CAMPAIGN_PERFORMANCE_REPORT",
                "ADGROUP_PERFORMANCE_REPORT", "AD_PERFORMANCE_REPORT",
                "CRITERIA_PERFORMANCE_REPORT", "CUSTOM_REPORT",
                "SEARCH_QUERY_PERFORMANCE_REPORT", "REACH_AND_FREQUENCY_PERFORMANCE_REPORT")
REQUESTS_PER_WINDOW = 20
WINDOW_S = 10.0
VAT_2026_START = dt.date(2026, 1, 1)
TSV = "text/tab-separated-values; charset=UTF-8"

_ERRORS = {
    # code: (en, ru)
    53: ("Authorization error", "Ошибка авторизации"),
    54: ("No rights", "Нет прав"),
    56: ("Request limit exceeded", "Превышен лимит запросов"),
    1000: ("Server temporarily unavailable", "Сервер временно недоступен"),
    1001: ("Service initialization error", "Ошибка инициализации сервиса"),
    1002: ("Operation error", "Ошибка операции"),
    4000: ("Invalid request parameters", "Неверные параметры запроса"),
    8000: ("Invalid request", "Некорректный запрос"),
}


class _Invalid(Exception):
    pass


def _money(amount: Decimal, micros: bool) -> str:
    cents = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if micros:
        return str(int(cents * 1_000_000))
    return f"{cents:.2f}"


class YandexDirectEmulator(EmulatorServer):
    """Yandex Direct Reports v5 emulator over ``rows`` of daily campaign statistics."""

    def __init__(
        self,
        rows: list[dict] | None = None,
        *,
        token: str = "demo-direct-token",
        client_login: str = "voronka-demo",
        currency: str = "RUB",
        offline_polls: int = 2,
        retry_in_s: int = 1,
        vat_rate: Decimal | str = Decimal("0.20"),
        vat_rate_2026: Decimal | str = Decimal("0.22"),
        rate_limit: int = REQUESTS_PER_WINDOW,
        rate_window_s: float = WINDOW_S,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.rows: list[dict] = [self._normalise_row(r) for r in (rows or [])]
        self.token = token
        self.client_login = client_login
        self.currency = currency
        self.offline_polls = int(offline_polls)
        self.retry_in_s = int(retry_in_s)
        self.vat_rate = Decimal(str(vat_rate))
        self.vat_rate_2026 = Decimal(str(vat_rate_2026))
        self.rate_limit = rate_limit
        self.rate_window_s = rate_window_s
        self._windows: dict[str, SlidingWindow] = {}
        self._lock = threading.RLock()
        # ReportName -> {"spec": canonical json, "answers": int (non-200 answers so far)}
        self.reports: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _normalise_row(row: dict) -> dict:
        out = dict(row)
        out["date"] = str(out["date"])
        out["campaign_id"] = int(out["campaign_id"])
        out["impressions"] = int(out.get("impressions", 0))
        out["clicks"] = int(out.get("clicks", 0))
        out["cost"] = Decimal(str(out.get("cost", 0)))
        return out

    def vat_for(self, date: str) -> Decimal:
        return self.vat_rate_2026 if dt.date.fromisoformat(date) >= VAT_2026_START \
            else self.vat_rate

    # -- responses ---------------------------------------------------------------------------
    @staticmethod
    def _request_id() -> str:
        return str(random.randrange(10**18, 10**19))

    def _error(self, request: Request, http_status: int, code: int, detail: str,
               request_id: str | None = None) -> Response:
        request_id = request_id or self._request_id()
        lang = (request.header("Accept-Language") or "en").lower()
        en, ru = _ERRORS.get(code, ("Error", "Ошибка"))
        body = {"error": {"request_id": request_id, "error_code": code,
                          "error_string": ru if lang.startswith("ru") else en,
                          "error_detail": detail}}
        return Response(http_status, body, "application/json; charset=utf-8",
                        {"RequestId": request_id})

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            resp = self._error(request, 429, 56, "Request limit exceeded for the Reports service")
            if "retry_after" in fault.params:
                resp.headers["Retry-After"] = str(int(fault.params["retry_after"]))
            return resp
        if fault.kind == "5xx":
            status = int(fault.params.get("status", 500))
            if status == 502:
                return self._error(request, 502, 1002,
                                   "Server-side time limit for building the report was exceeded")
            if status == 503:
                return self._error(request, 503, 1000, "Service temporarily unavailable")
            return self._error(request, status, 1000, "Internal server error")
        if fault.kind == "expired_token":
            return self._error(request, 403, 53, "OAuth token is expired or revoked")
        raise AssertionError(fault.kind)  # pragma: no cover

    # -- routing -----------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path not in (REPORTS_PATH, "/v5/reports", CLIENTS_PATH):
            return self._error(request, 404, 8000, f"Unknown path {request.path}")
        if request.method != "POST":
            return self._error(request, 405, 8000, "Only POST is supported")
        auth = request.header("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        window = self._window(token or "<anonymous>")
        if window.hit(request.arrived):
            return self._error(request, 429, 56,
                               f"No more than {self.rate_limit} requests per "
                               f"{self.rate_window_s:g} seconds are allowed")
        if scheme.lower() != "bearer" or not token:
            return self._error(request, 403, 53, "OAuth token is missing")
        if token != self.token:
            return self._error(request, 403, 53, "Invalid OAuth token")
        login = request.header("Client-Login")
        if login and login.strip().lower() != self.client_login.lower():
            return self._error(request, 403, 54,
                               f"No rights to access the client login {login.strip()}")
        if path == CLIENTS_PATH:
            return self._clients(request)
        try:
            params = self._validate(request)
        except _Invalid as exc:
            return self._error(request, 400, 4000, str(exc))
        return self._report(request, params)

    def _window(self, key: str) -> SlidingWindow:
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = SlidingWindow(self.rate_limit, self.rate_window_s)
            return window

    def _clients(self, request: Request) -> Response:
        """``Clients.get``: the advertiser's own record (Login, Currency fields)."""
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            return self._error(request, 400, 8000, "The request body is not valid JSON")
        if not isinstance(body, dict) or body.get("method") != "get":
            return self._error(request, 400, 8000, "Clients supports the method get only")
        fields = (body.get("params") or {}).get("FieldNames") or []
        record = {"Login": self.client_login, "Currency": self.currency, "ClientId": 1}
        return Response(200, {"result": {"Clients": [
            {f: record[f] for f in fields if f in record}]}},
            "application/json; charset=utf-8", {"RequestId": self._request_id()})

    # -- validation --------------------------------------------------------------------------
    def _validate(self, request: Request) -> dict[str, Any]:
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            raise _Invalid("The request body is not valid JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("params"), dict):
            raise _Invalid("Required field params is missing")
        params = body["params"]
        for name in REQUIRED_PARAMS:
            if name not in params:
                raise _Invalid(f"Required field {name} is missing in params")
        crit = params["SelectionCriteria"]
        if not isinstance(crit, dict):
            raise _Invalid("SelectionCriteria must be an object")
        fields = params["FieldNames"]
        if not isinstance(fields, list) or not fields:
            raise _Invalid("FieldNames must be a non-empty array")
        for f in fields:
            if f not in SUPPORTED_FIELDS:
                raise _Invalid(f"FieldNames contains the unsupported field {f!r}; the emulator "
                               f"supports {', '.join(SUPPORTED_FIELDS)}")
        if len(set(fields)) != len(fields):
            raise _Invalid("FieldNames contains duplicate fields")
        name = params["ReportName"]
        if not isinstance(name, str) or not name.strip():
            raise _Invalid("ReportName must be a non-empty string")
        if params["ReportType"] not in REPORT_TYPES:
            raise _Invalid(f"Invalid ReportType {params['ReportType']!r}")
        if params["ReportType"] != "CAMPAIGN_PERFORMANCE_REPORT":
            raise _Invalid(f"ReportType {params['ReportType']} is not supported by the emulator")
        if params["DateRangeType"] != "CUSTOM_DATE":
            raise _Invalid(f"DateRangeType {params['DateRangeType']!r} is not supported by the "
                           "emulator; use CUSTOM_DATE")
        if params["Format"] != "TSV":
            raise _Invalid("Format must be TSV")
        if params["IncludeVAT"] not in ("YES", "NO"):
            raise _Invalid("IncludeVAT must be YES or NO")
        for key in ("DateFrom", "DateTo"):
            if key not in crit:
                raise _Invalid(f"SelectionCriteria.{key} is required for CUSTOM_DATE")
            try:
                dt.date.fromisoformat(str(crit[key]))
            except ValueError:
                raise _Invalid(f"SelectionCriteria.{key} must be YYYY-MM-DD") from None
        if crit["DateFrom"] > crit["DateTo"]:
            raise _Invalid("SelectionCriteria.DateFrom is later than DateTo")
        for flt in crit.get("Filter") or []:
            if not isinstance(flt, dict) or flt.get("Field") != "CampaignId":
                raise _Invalid("The emulator supports Filter on CampaignId only")
            if flt.get("Operator") not in ("EQUALS", "IN", "NOT_EQUALS", "NOT_IN"):
                raise _Invalid(f"Invalid Filter.Operator {flt.get('Operator')!r}")
            values = flt.get("Values")
            if not isinstance(values, list) or not values:
                raise _Invalid("Filter.Values must be a non-empty array")
        mode = (request.header("processingMode") or "auto").lower()
        if mode not in ("online", "offline", "auto"):
            raise _Invalid(f"Invalid processingMode header value {mode!r}")
        return params

    # -- reports -----------------------------------------------------------------------------
    def _report(self, request: Request, params: dict[str, Any]) -> Response:
        request_id = self._request_id()
        name = params["ReportName"]
        spec = json.dumps(params, sort_keys=True, ensure_ascii=False)
        mode = (request.header("processingMode") or "auto").lower()
        with self._lock:
            state = self.reports.get(name)
            if state is not None and state["spec"] != spec:
                return self._error(
                    request, 400, 4000,
                    f"A report named {name!r} with different parameters already exists; "
                    "use a different ReportName", request_id)
            if state is None:
                state = self.reports[name] = {"spec": spec, "answers": 0}
            ready = mode == "online" or state["answers"] >= self.offline_polls
            if not ready:
                status = 201 if state["answers"] == 0 else 202
                state["answers"] += 1
                queued = sum(1 for s in self.reports.values()
                             if s["answers"] < self.offline_polls)
                return Response(status, b"", None, {
                    "RequestId": request_id,
                    "retryIn": str(self.retry_in_s),
                    "reportsInQueue": str(max(queued, 1)),
                })
            state["answers"] = max(state["answers"], self.offline_polls)
        return Response(200, self._tsv(request, params), TSV, {"RequestId": request_id})

    def _tsv(self, request: Request, params: dict[str, Any]) -> str:
        def flag(name: str) -> bool:
            return (request.header(name) or "").strip().lower() == "true"

        micros = (request.header("returnMoneyInMicros") or "true").strip().lower() != "false"
        crit = params["SelectionCriteria"]
        date_from, date_to = str(crit["DateFrom"]), str(crit["DateTo"])
        fields = params["FieldNames"]
        include_vat = params["IncludeVAT"] == "YES"
        rows = [r for r in self.rows if date_from <= r["date"] <= date_to]
        for flt in crit.get("Filter") or []:
            values = {str(v) for v in flt["Values"]}
            keep = flt["Operator"] in ("EQUALS", "IN")
            rows = [r for r in rows if (str(r["campaign_id"]) in values) == keep]
        # Group by the requested dimensions, as the real service does.
        by_date = "Date" in fields
        by_campaign = "CampaignId" in fields or "CampaignName" in fields
        groups: dict[tuple[str, int], dict[str, Any]] = {}
        for r in rows:
            key = (r["date"] if by_date else "", r["campaign_id"] if by_campaign else 0)
            cost = r["cost"]
            if include_vat:
                cost = cost * (1 + self.vat_for(r["date"]))
            g = groups.setdefault(key, {"name": str(r.get("campaign_name", "")),
                                        "impressions": 0, "clicks": 0, "cost": Decimal(0)})
            g["impressions"] += r["impressions"]
            g["clicks"] += r["clicks"]
            g["cost"] += cost
        lines: list[str] = []
        if not flag("skipReportHeader"):
            lines.append(f"{params['ReportName']} ({date_from} - {date_to})")
        if not flag("skipColumnHeader"):
            lines.append("\t".join(fields))
        for (date, campaign_id), g in sorted(groups.items()):
            values = {
                "Date": date,
                "CampaignId": str(campaign_id),
                "CampaignName": g["name"].replace("\t", " "),
                "Impressions": str(g["impressions"]),
                "Clicks": str(g["clicks"]),
                "Cost": _money(g["cost"], micros),
            }
            lines.append("\t".join(values[f] for f in fields))
        if not flag("skipReportSummary"):
            lines.append(f"Total rows: {len(groups)}")
        return "".join(line + "\n" for line in lines)
