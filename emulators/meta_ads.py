"""Local emulator of the Meta Marketing API Ads Insights edge (daily campaign rows).

Faithful to the notes in ad_apis.md §A4: ``GET /{v}/act_{id}/insights`` (sync) with
``level=campaign&time_increment=1&time_range={"since","until"}&fields=...`` and cursor paging
(``data[]``, ``paging.cursors.before/after``, absolute ``paging.next``); ``POST
/{v}/act_{id}/insights`` → ``{"report_run_id"}``, ``GET /{v}/{report_run_id}`` →
``async_status`` / ``async_percent_completion`` (and, when failed, the v25.0 ``error_*``
fields), ``GET /{v}/{report_run_id}/insights`` with the same paging. Numbers, ``spend``
included, are strings; ``spend`` is in the account currency as major units. Auth is the
``access_token`` parameter or ``Authorization: Bearer``. Every response carries
``X-Business-Use-Case-Usage`` (percentages plus ``estimated_time_to_regain_access`` in minutes).
Errors use the Graph body ``{"error": {message, type, code, error_subcode, fbtrace_id}}``.

Not in the notes, so chosen here [U]: Graph errors (throttling and code 190 included) are
HTTP 400, except injected 5xx faults. ``faults.add("429", code=613, subcode=1487742,
regain_minutes=1)`` produces a throttling error with those values (default code 17, subcode
2446079, as in the notes' sample body); ``fail_jobs(n)`` makes the next ``n`` report runs end
in ``Job Failed``; ``usage`` sets the percentages the usage header reports.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import re
import string
import threading
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

from ._base import EmulatorServer, Fault, Request, Response, SlidingWindow

BASE_FIELDS = ("campaign_id", "campaign_name", "account_currency", "impressions", "clicks",
               "spend")
LIST_FIELDS = ("actions", "action_values")  # lists of {action_type, value}; omitted when empty
SUPPORTED_FIELDS = (*BASE_FIELDS, "account_id", "date_start", "date_stop", *LIST_FIELDS)
DEFAULT_FIELDS = ("impressions", "spend")  # Graph's default when ``fields`` is absent [U]
MAX_LIMIT = 5000

_THROTTLE_MESSAGES = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
}
_VERSION_RE = re.compile(r"^v\d+\.\d+$")


class _GraphError(Exception):
    def __init__(self, message: str, code: int, subcode: int | None = None,
                 type_: str = "OAuthException", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.type = type_
        self.status = status


def _money(amount: Decimal) -> str:
    return f"{amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):.2f}"


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(str(index).encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return int(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        raise _GraphError("(#100) The cursor is invalid", 100) from None


class MetaAdsEmulator(EmulatorServer):
    """Meta Ads Insights emulator over ``rows`` of daily campaign statistics."""

    def __init__(
        self,
        rows: list[dict] | None = None,
        *,
        ad_account_id: str = "act_1234567890",
        access_token: str = "demo-meta-token",
        account_currency: str = "RUB",
        api_version: str = "v25.0",
        async_polls: int = 2,
        page_size: int = 25,
        buc_call_limit: int = 0,
        buc_window_s: float = 3600.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.rows: list[dict] = [self._normalise_row(r) for r in (rows or [])]
        self.account_id = ad_account_id.removeprefix("act_")
        self.access_token = access_token
        self.account_currency = account_currency
        self.api_version = api_version
        self.async_polls = int(async_polls)
        self.page_size = int(page_size)
        # Business Use Case usage: percentages reported in X-Business-Use-Case-Usage. Tests
        # set them directly; with ``buc_call_limit`` the call count also grows with real calls
        # and passing 100% answers code 80000.
        self.usage: dict[str, int] = {"call_count": 0, "total_cputime": 0, "total_time": 0}
        self.regain_minutes = 0
        self.buc_call_limit = int(buc_call_limit)
        self._calls = SlidingWindow(self.buc_call_limit, buc_window_s)
        self._lock = threading.RLock()
        self._jobs_to_fail = 0
        # report_run_id -> {"id", "spec": validated params, "reads": status reads, "fail": bool}
        self.report_runs: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _normalise_row(row: dict) -> dict:
        out = dict(row)
        out["date"] = str(out["date"])
        out["campaign_id"] = str(out["campaign_id"])
        out["campaign_name"] = str(out.get("campaign_name", ""))
        out["impressions"] = int(out.get("impressions", 0))
        out["clicks"] = int(out.get("clicks", 0))
        out["spend"] = Decimal(str(out.get("spend", 0)))
        return out

    def fail_jobs(self, count: int = 1) -> None:
        """The next ``count`` report runs end in ``Job Failed``."""
        with self._lock:
            self._jobs_to_fail += int(count)

    # -- responses ---------------------------------------------------------------------------
    @staticmethod
    def _trace_id() -> str:
        return "A" + "".join(random.choices(string.ascii_letters + string.digits, k=22))

    def _usage_header(self, regain_minutes: int = 0) -> dict[str, str]:
        with self._lock:
            usage = dict(self.usage)
            regain = max(regain_minutes, self.regain_minutes)
        entry = {"type": "ads_insights", **usage, "estimated_time_to_regain_access": regain}
        throttle = {"app_id_util_pct": 0, "acc_id_util_pct": usage["call_count"],
                    "ads_api_access_tier": "limited_access"}
        return {
            "X-Business-Use-Case-Usage": json.dumps({self.account_id: [entry]}),
            "X-FB-Ads-Insights-Throttle": json.dumps(throttle),
        }

    def _json(self, status: int, body: Any, regain_minutes: int = 0) -> Response:
        headers = self._usage_header(regain_minutes)
        headers["x-fb-trace-id"] = self._trace_id()
        return Response(status, body, "application/json; charset=UTF-8", headers)

    def _error(self, exc: _GraphError, regain_minutes: int = 0) -> Response:
        err: dict[str, Any] = {"message": exc.message, "type": exc.type, "code": exc.code}
        if exc.subcode is not None:
            err["error_subcode"] = exc.subcode
        err["fbtrace_id"] = self._trace_id()
        return self._json(exc.status, {"error": err}, regain_minutes)

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            code = int(fault.params.get("code", 17))
            subcode = fault.params.get("subcode", 2446079 if code == 17 else None)
            message = _THROTTLE_MESSAGES.get(
                code, f"(#{code}) There have been too many calls from this ad-account. "
                "Please wait a bit and try again.")
            regain = int(fault.params.get("regain_minutes", 0))
            return self._error(_GraphError(message, code, subcode), regain)
        if fault.kind == "5xx":
            status = int(fault.params.get("status", 500))
            return self._error(_GraphError(
                "An unexpected error has occurred. Please retry your request later.", 2,
                1504043, type_="OAuthException", status=status))
        if fault.kind == "expired_token":
            return self._error(_GraphError(
                "Error validating access token: Session has expired on Monday, 01-Jun-26 "
                "00:00:00 PDT.", 190, 463))
        raise AssertionError(fault.kind)  # pragma: no cover

    # -- routing -----------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        try:
            return self._route(request)
        except _GraphError as exc:
            return self._error(exc)

    def _params(self, request: Request) -> dict[str, str]:
        """Query parameters plus, for POST, form-encoded body parameters (Graph takes both)."""
        params = {k: v for k, v in request.query_pairs}
        ctype = (request.header("Content-Type") or "").lower()
        if request.body and "application/x-www-form-urlencoded" in ctype:
            params.update(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
        return params

    def _route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if not parts or not _VERSION_RE.match(parts[0]):
            raise _GraphError("Unknown path components: " + request.path, 2500)
        if parts[0] != self.api_version:
            raise _GraphError(f"(#12) This emulator serves {self.api_version} only; "
                              f"{parts[0]} was requested", 12)
        params = self._params(request)
        token = self._authenticate(request, params)
        if self.buc_call_limit and self._calls.hit(request.arrived):
            with self._lock:
                self.usage["call_count"] = 100
            raise _GraphError(
                "(#80000) There have been too many calls from this ad-account. Wait a bit and "
                "try again.", 80000, 2446079)
        if self.buc_call_limit:
            with self._lock:
                share = len(self._calls._times) * 100 // self.buc_call_limit
                self.usage["call_count"] = max(self.usage["call_count"], min(share, 100))
        rest = parts[1:]
        if len(rest) == 2 and rest[1] == "insights" and rest[0].startswith("act_"):
            self._check_account(rest[0])
            spec = self._validate(params)
            if request.method == "GET":
                return self._page(request, spec, params, token, f"act_{self.account_id}")
            if request.method == "POST":
                return self._create_run(spec)
        elif len(rest) == 1 and rest[0].startswith("act_") and request.method == "GET":
            self._check_account(rest[0])
            return self._json(200, self._account_node(rest[0], params))
        elif len(rest) == 1 and request.method == "GET":
            return self._json(200, self._run_status(self._run(rest[0])))
        elif len(rest) == 2 and rest[1] == "insights" and request.method == "GET":
            run_id = rest[0]
            run = self._run(run_id)
            status = self._run_status(run, count_read=False)
            if status["async_status"] != "Job Completed":
                raise _GraphError(f"(#100) Report run {run_id} is not complete: "
                                  f"{status['async_status']}", 100)
            return self._page(request, run["spec"], params, token, run_id)
        node = rest[0] if rest else ""
        raise _GraphError(
            f"Unsupported {request.method.lower()} request. Object with ID '{node}'"
            " does not exist, cannot be loaded due to missing permissions, or does not support "
            "this operation.", 100, 33, type_="GraphMethodException")

    def _authenticate(self, request: Request, params: dict[str, str]) -> str:
        """The caller's token: the ``access_token`` parameter, else the Bearer header."""
        token = params.get("access_token")
        if token is None:
            scheme, _, value = (request.header("Authorization") or "").partition(" ")
            if scheme.lower() in ("bearer", "oauth"):
                token = value.strip()
        if not token:
            raise _GraphError("An access token is required to request this resource.", 104)
        if token != self.access_token:
            raise _GraphError("Invalid OAuth access token - Cannot parse access token", 190)
        return token

    def _account_node(self, node: str, params: dict[str, str]) -> dict[str, Any]:
        """``GET /act_<id>?fields=...``: the ad account's name, currency and status."""
        known = {"id": node, "account_id": self.account_id, "name": f"Ad account {node}",
                 "currency": self.account_currency, "account_status": 1,
                 "timezone_name": "Europe/Moscow"}
        fields = [f for f in (params.get("fields") or "name").split(",") if f]
        for f in fields:
            if f not in known:
                raise _GraphError(f"(#100) Tried accessing nonexisting field ({f}) on node "
                                  "type (AdAccount)", 100)
        return {**{f: known[f] for f in fields}, "id": node}

    def _check_account(self, node: str) -> None:
        if node != f"act_{self.account_id}":
            raise _GraphError(
                f"Unsupported get request. Object with ID '{node}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation.",
                100, 33, type_="GraphMethodException")

    # -- validation --------------------------------------------------------------------------
    def _validate(self, params: dict[str, str]) -> dict[str, Any]:
        level = params.get("level", "campaign")
        if level not in ("ad", "adset", "campaign", "account"):
            raise _GraphError("(#100) level must be one of ad, adset, campaign, account", 100)
        if level != "campaign":
            raise _GraphError(f"(#100) level={level} is not supported by the emulator", 100)
        if params.get("time_increment", "all_days") != "1":
            raise _GraphError("(#100) The emulator supports time_increment=1 only", 100)
        if "date_preset" in params and "time_range" not in params:
            raise _GraphError("(#100) The emulator supports time_range only, not date_preset",
                              100)
        try:
            time_range = json.loads(params.get("time_range") or "")
            since = dt.date.fromisoformat(time_range["since"])
            until = dt.date.fromisoformat(time_range["until"])
        except (ValueError, TypeError, KeyError):
            raise _GraphError('(#100) time_range must be {"since":"YYYY-MM-DD",'
                              '"until":"YYYY-MM-DD"}', 100) from None
        if since > until:
            raise _GraphError("(#100) time_range: since must not be later than until", 100)
        # the notes: the "until" check is made against the UTC date [C]
        if until > dt.datetime.now(dt.UTC).date():
            raise _GraphError("(#100) Param time_range[until] is invalid: end cannot be in "
                              "the future", 100)
        fields = [f for f in (params.get("fields") or "").split(",") if f]
        for f in fields:
            if f not in SUPPORTED_FIELDS:
                raise _GraphError(f"(#100) {f} is not valid for fields param. The emulator "
                                  f"supports: {', '.join(SUPPORTED_FIELDS)}", 100)
        limit = params.get("limit")
        if limit is not None and (not limit.isdigit() or not 0 < int(limit) <= MAX_LIMIT):
            raise _GraphError(f"(#100) limit must be an integer in 1..{MAX_LIMIT}", 100)
        return {"since": since.isoformat(), "until": until.isoformat(),
                "fields": fields or list(DEFAULT_FIELDS)}

    # -- data --------------------------------------------------------------------------------
    def _rows(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        rows = sorted((r for r in self.rows if spec["since"] <= r["date"] <= spec["until"]),
                      key=lambda r: (r["date"], r["campaign_id"]))
        out = []
        for r in rows:
            values: dict[str, Any] = {
                "account_id": self.account_id,
                "campaign_id": r["campaign_id"],
                "campaign_name": r["campaign_name"],
                "account_currency": self.account_currency,
                "impressions": str(r["impressions"]),
                "clicks": str(r["clicks"]),
                "spend": _money(r["spend"]),
            }
            for name in LIST_FIELDS:
                if r.get(name):
                    values[name] = [{"action_type": str(a["action_type"]),
                                     "value": str(a["value"])} for a in r[name]]
            row = {f: values[f] for f in spec["fields"] if f in values}
            row["date_start"] = r["date"]
            row["date_stop"] = r["date"]
            out.append(row)
        return out

    def _page(self, request: Request, spec: dict[str, Any], params: dict[str, str],
              token: str, node: str) -> Response:
        rows = self._rows(spec)
        limit = int(params.get("limit") or self.page_size)
        start = 0
        if params.get("after"):
            start = _uncursor(params["after"]) + 1
        elif params.get("before"):
            start = max(0, _uncursor(params["before"]) - limit)
        chunk = rows[start:start + limit]
        body: dict[str, Any] = {"data": chunk}
        if chunk:
            paging: dict[str, Any] = {"cursors": {"before": _cursor(start),
                                                  "after": _cursor(start + len(chunk) - 1)}}
            if start + len(chunk) < len(rows):
                query = {k: v for k, v in params.items() if k not in ("after", "before")}
                # Graph repeats the caller's token in its paging links (whether it came as a
                # parameter or a header: the worst case, so clients must cope with it) [U]
                query["access_token"] = token
                query["limit"] = str(limit)
                query["after"] = paging["cursors"]["after"]
                paging["next"] = f"{self.base_url}/{self.api_version}/{node}/insights?" \
                    + urlencode(query)
            if start > 0:
                query = {k: v for k, v in params.items() if k not in ("after", "before")}
                query["access_token"] = token
                query["before"] = paging["cursors"]["before"]
                query["limit"] = str(limit)
                paging["previous"] = f"{self.base_url}/{self.api_version}/{node}/insights?" \
                    + urlencode(query)
            body["paging"] = paging
        return self._json(200, body)

    # -- async report runs -------------------------------------------------------------------
    def _create_run(self, spec: dict[str, Any]) -> Response:
        with self._lock:
            run_id = str(random.randrange(10**15, 10**16))
            fail = self._jobs_to_fail > 0
            if fail:
                self._jobs_to_fail -= 1
            self.report_runs[run_id] = {"id": run_id, "spec": spec, "reads": 0, "fail": fail}
        return self._json(200, {"report_run_id": run_id})

    def _run(self, run_id: str) -> dict[str, Any]:
        with self._lock:
            run = self.report_runs.get(run_id)
        if run is None:
            raise _GraphError(
                f"Unsupported get request. Object with ID '{run_id}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation.",
                100, 33, type_="GraphMethodException")
        return run

    def _run_status(self, run: dict[str, Any], count_read: bool = True) -> dict[str, Any]:
        """The AdReportRun object; each read moves the job one step on.

        Reads 0 .. async_polls-1 answer ``Job Not Started`` then ``Job Running``; later reads
        answer ``Job Completed`` (or ``Job Failed`` for a run marked to fail).
        """
        with self._lock:
            reads = run["reads"]
            if count_read:
                run["reads"] += 1
        polls = max(self.async_polls, 0)
        if reads >= polls:
            status, percent = ("Job Failed" if run["fail"] else "Job Completed"), 100
        elif reads == 0:
            status, percent = "Job Not Started", 0
        else:
            status, percent = "Job Running", reads * 100 // polls
        body: dict[str, Any] = {
            "id": run["id"],
            "account_id": self.account_id,
            "async_status": status,
            "async_percent_completion": percent,
            "date_start": run["spec"]["since"],
            "date_stop": run["spec"]["until"],
        }
        if status == "Job Failed":
            body.update({
                "error_code": -2,
                "error_subcode": 2490547,
                "error_message": "Report run failed; please retry later",
                "error_user_title": "Report failed",
                "error_user_msg": "The report could not be generated. Please try again later.",
            })
        return body
