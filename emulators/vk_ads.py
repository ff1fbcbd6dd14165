"""Local emulator of the VK Ads (ads.vk.com, formerly myTarget) API v2: OAuth tokens, ad plans and
daily ad plan statistics.

Faithful to the notes in ad_apis.md §A2:

- ``POST /api/v2/oauth2/token.json`` (form-encoded): ``grant_type=client_credentials`` and
  ``refresh_token``; the reply holds ``access_token``, ``refresh_token``, ``expires_in``. A cabinet
  may hold at most ``max_active_tokens`` (5) live tokens; one more is refused until old ones are
  deleted with ``POST /api/v2/oauth2/token/delete.json``.
- ``GET /api/v2/ad_plans.json`` with ``fields``, ``limit`` (default 20, at most 50), ``offset`` and
  ``_<field>__in`` filters; collections are ``{count, offset, limit, items}``.
- ``GET /api/v2/statistics/ad_plans/day.json`` with ``date_from``/``date_to`` (inclusive), ``id``
  (comma list or repeated), ``metrics=base`` and ``attribution``; at most 200 objects and 366 days
  back, else ``ERR_LIMIT_EXCEEDED``. Money (``spent``, ``cpm``, ``cpc``, ``cpa``) is a decimal
  string, counts are integers.
- Per-user limits per second, hour and day aligned to calendar periods, reported on every
  response as ``X-RateLimit-{RPS,Hourly,Daily}-{Limit,Remaining}``; over a limit → HTTP 429.
- Errors are ``{"error": {"code": "ERR_…", "message": "…"}}``.

Not confirmed by the notes and chosen here: the body of the 5-token refusal (the same error
envelope with ``ERR_LIMIT_EXCEEDED``), the 401 body for a bad or expired token
(``ERR_ACCESS_DENIED``), a row for every day of the range (zeros when nothing was spent), that
``ad_plans.json`` leaves out deleted plans unless ``_status__in`` asks for them, and no
``Retry-After`` on a 429 (a FaultPlan ``429`` with ``retry_after=`` adds one).
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from ._base import EmulatorServer, Fault, Request, Response

TOKEN_PATH = "/api/v2/oauth2/token.json"
TOKEN_DELETE_PATH = "/api/v2/oauth2/token/delete.json"
AD_PLANS_PATH = "/api/v2/ad_plans.json"
STATS_PATH = "/api/v2/statistics/ad_plans/day.json"
MAX_LIST_LIMIT = 50
DEFAULT_LIST_LIMIT = 20
MAX_STATS_OBJECTS = 200
MAX_STATS_DAYS_BACK = 366
AD_PLAN_FIELDS = ("id", "name", "status", "created", "updated")
STATUSES = ("active", "blocked", "deleted")
METRIC_SETS = ("base", "all", "events", "video", "carousel", "ad_offers", "uniques",
               "uniques_video", "tps", "romi", "playable", "custom_event", "social_network")
MOSCOW = ZoneInfo("Europe/Moscow")
JSON = "application/json; charset=utf-8"


class _Invalid(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def error(status: int, code: str, message: str,
          headers: dict[str, str] | None = None) -> Response:
    return Response(status, {"error": {"code": code, "message": message}}, JSON, headers)


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _ratio(num: Decimal, den: Decimal, scale: Decimal = Decimal(1)) -> Decimal:
    return (num * scale / den) if den else Decimal(0)


def _base_metrics(shows: int, clicks: int, spent: Decimal, goals: int) -> dict[str, Any]:
    cpa = _money(_ratio(spent, Decimal(goals)))
    cr = float(round(_ratio(Decimal(goals), Decimal(clicks), Decimal(100)), 2))
    return {
        "shows": shows,
        "clicks": clicks,
        "spent": _money(spent),
        "cpm": _money(_ratio(spent, Decimal(shows), Decimal(1000))),
        "cpc": _money(_ratio(spent, Decimal(clicks))),
        "ctr": float(round(_ratio(Decimal(clicks), Decimal(shows), Decimal(100)), 2)),
        "vk": {"goals": goals, "cpa": cpa, "cr": cr},
        # legacy duplicates of vk.* that the API still returns
        "goals": goals,
        "cpa": cpa,
        "cr": cr,
    }


class _Calendar:
    """Request counts per calendar second, hour and day (the API aligns limits to them)."""

    def __init__(self, rps: int, hourly: int, daily: int) -> None:
        self.limits = {"RPS": rps, "Hourly": hourly, "Daily": daily}
        self.counts: dict[str, tuple[int, int]] = {}  # kind -> (period number, count)

    @staticmethod
    def _period(kind: str, now: float) -> int:
        if kind == "RPS":
            return int(now)
        if kind == "Hourly":
            return int(now // 3600)
        return dt.datetime.fromtimestamp(now, MOSCOW).date().toordinal()

    def hit(self, now: float) -> tuple[bool, dict[str, str]]:
        """Count one request; return (over any limit, X-RateLimit-* headers)."""
        over = False
        headers: dict[str, str] = {}
        for kind, limit in self.limits.items():
            period = self._period(kind, now)
            prev_period, count = self.counts.get(kind, (period, 0))
            count = (count if prev_period == period else 0) + 1
            self.counts[kind] = (period, count)
            over = over or count > limit
            headers[f"X-RateLimit-{kind}-Limit"] = str(limit)
            headers[f"X-RateLimit-{kind}-Remaining"] = str(max(limit - count, 0))
        return over, headers


class VKAdsEmulator(EmulatorServer):
    """VK Ads API v2 emulator over daily ``rows`` of ad plan statistics.

    ``rows``: ``{"date", "ad_plan_id", "ad_plan_name", "shows", "clicks", "spent": Decimal}``
    (optionally ``"goals"``, ``"status"``). ``today`` fixes the "now" of the 366-day limit
    (default: today in Moscow).
    """

    def __init__(
        self,
        rows: list[dict] | None = None,
        *,
        client_id: str = "demo-vk-client",
        client_secret: str = "demo-vk-secret",
        token_ttl_s: int = 86400,
        max_active_tokens: int = 5,
        rate_limit_per_s: int = 10,
        hourly_limit: int = 36_000,
        daily_limit: int = 500_000,
        user_id: int = 19_244_873,
        today: dt.date | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.rows: list[dict] = [self._normalise_row(r) for r in (rows or [])]
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl_s = int(token_ttl_s)
        self.max_active_tokens = int(max_active_tokens)
        self.rate_limit_per_s = int(rate_limit_per_s)
        self.user_id = int(user_id)
        self.today = today
        self._lock = threading.RLock()
        self._calendars: dict[str, _Calendar] = {}
        self._limits = (int(rate_limit_per_s), int(hourly_limit), int(daily_limit))
        # access token -> {"expires_at": float, "refresh_token": str}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        # refresh token -> access token it currently backs
        self.refresh_tokens: dict[str, str] = {}
        self.tokens_issued = 0
        # ad plan id -> {"id", "name", "status", "created", "updated"}; statuses may be edited
        self.ad_plans: dict[int, dict[str, Any]] = {}
        for r in self.rows:
            self.ad_plans.setdefault(r["ad_plan_id"], {
                "id": r["ad_plan_id"], "name": r["ad_plan_name"],
                "status": r.get("status") or "active",
                "created": f"{r['date']} 10:00:00", "updated": f"{r['date']} 10:00:00",
            })

    @staticmethod
    def _normalise_row(row: dict) -> dict:
        out = dict(row)
        out["date"] = str(out["date"])
        out["ad_plan_id"] = int(out["ad_plan_id"])
        out["ad_plan_name"] = str(out.get("ad_plan_name", ""))
        out["shows"] = int(out.get("shows", 0))
        out["clicks"] = int(out.get("clicks", 0))
        out["goals"] = int(out.get("goals", 0))
        out["spent"] = Decimal(str(out.get("spent", 0)))
        return out

    def add_row(self, row: dict) -> None:
        row = self._normalise_row(row)
        with self._lock:
            self.rows.append(row)
            self.ad_plans.setdefault(row["ad_plan_id"], {
                "id": row["ad_plan_id"], "name": row["ad_plan_name"], "status": "active",
                "created": f"{row['date']} 10:00:00", "updated": f"{row['date']} 10:00:00"})

    def current_today(self) -> dt.date:
        return self.today or dt.datetime.now(MOSCOW).date()

    def active_tokens(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        with self._lock:
            return [t for t, v in self.access_tokens.items() if v["expires_at"] > now]

    def expire_tokens(self) -> None:
        """Every access token issued so far is now expired (401 on use; refresh still works)."""
        with self._lock:
            for info in self.access_tokens.values():
                info["expires_at"] = 0.0

    # -- faults ------------------------------------------------------------------------------
    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            headers = {}
            if "retry_after" in fault.params:
                headers["Retry-After"] = str(int(fault.params["retry_after"]))
            return Response(429, b"", None, headers)
        if fault.kind == "5xx":
            status = int(fault.params.get("status", 500))
            return error(status, "ERR_INTERNAL", "Internal server error, retry later")
        if fault.kind == "expired_token":
            return error(401, "ERR_ACCESS_DENIED", "Access token expired")
        raise AssertionError(fault.kind)  # pragma: no cover

    # -- routing -----------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        path = request.path
        if path == TOKEN_PATH:
            return self._only("POST", request) or self._token(request)
        if path == TOKEN_DELETE_PATH:
            return self._only("POST", request) or self._token_delete(request)
        if path not in (AD_PLANS_PATH, STATS_PATH):
            return error(404, "ERR_WRONG_RESOURCE", f"Unknown resource {path}")
        if request.method != "GET":
            return error(405, "ERR_WRONG_RESOURCE", f"Method {request.method} is not allowed")
        token = self._bearer(request)
        if token is None:
            return error(401, "ERR_ACCESS_DENIED", "Invalid or expired access token")
        over, headers = self._calendar(token).hit(time.time())
        if over:
            return Response(429, b"", None, headers)
        try:
            body = self._ad_plans(request) if path == AD_PLANS_PATH else self._stats(request)
        except _Invalid as exc:
            return error(exc.status, exc.code, exc.message, headers)
        return Response(200, body, JSON, headers)

    @staticmethod
    def _only(method: str, request: Request) -> Response | None:
        if request.method != method:
            return error(405, "ERR_WRONG_RESOURCE", f"Only {method} is supported")
        return None

    def _calendar(self, token: str) -> _Calendar:
        # limits are per user; every token of the emulator belongs to the one cabinet
        with self._lock:
            cal = self._calendars.get("user")
            if cal is None:
                cal = self._calendars["user"] = _Calendar(*self._limits)
            return cal

    def _bearer(self, request: Request) -> str | None:
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        with self._lock:
            info = self.access_tokens.get(token)
            if info is None or info["expires_at"] <= time.time():
                return None
        return token

    # -- oauth -------------------------------------------------------------------------------
    @staticmethod
    def _form(request: Request) -> dict[str, str]:
        ctype = (request.header("Content-Type") or "").lower()
        if "application/x-www-form-urlencoded" not in ctype:
            raise _Invalid("ERR_WRONG_PARAMETER",
                           "The body must be application/x-www-form-urlencoded")
        return dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))

    def _token(self, request: Request) -> Response:
        try:
            form = self._form(request)
        except _Invalid as exc:
            return error(exc.status, exc.code, exc.message)
        if form.get("client_id") != self.client_id or \
                form.get("client_secret") != self.client_secret:
            return error(401, "ERR_ACCESS_DENIED", "Invalid client_id or client_secret")
        grant = form.get("grant_type")
        now = time.time()
        with self._lock:
            if grant == "client_credentials":
                if len(self.active_tokens(now)) >= self.max_active_tokens:
                    return error(400, "ERR_LIMIT_EXCEEDED",
                                 f"Active access token limit reached ({self.max_active_tokens});"
                                 f" delete old tokens with {TOKEN_DELETE_PATH}")
                return Response(200, self._issue(now), JSON)
            if grant == "refresh_token":
                refresh = form.get("refresh_token") or ""
                old_access = self.refresh_tokens.pop(refresh, None)
                if old_access is None:
                    return error(401, "ERR_ACCESS_DENIED", "Invalid refresh token")
                self.access_tokens.pop(old_access, None)  # the refreshed token takes its slot
                return Response(200, self._issue(now, refresh), JSON)
            return error(400, "ERR_WRONG_PARAMETER",
                         f"Unsupported grant_type {grant!r}; the emulator supports "
                         "client_credentials and refresh_token")

    def _issue(self, now: float, refresh: str | None = None) -> dict[str, Any]:
        access = secrets.token_urlsafe(30)
        refresh = refresh or secrets.token_urlsafe(30)
        self.access_tokens[access] = {"expires_at": now + self.token_ttl_s,
                                      "refresh_token": refresh}
        self.refresh_tokens[refresh] = access
        self.tokens_issued += 1
        return {"access_token": access, "token_type": "Bearer", "scope": ["read_ads"],
                "expires_in": self.token_ttl_s, "refresh_token": refresh,
                "tokens_left": max(self.max_active_tokens - len(self.active_tokens(now)), 0)}

    def _token_delete(self, request: Request) -> Response:
        try:
            form = self._form(request)
        except _Invalid as exc:
            return error(exc.status, exc.code, exc.message)
        if form.get("client_id") != self.client_id or \
                form.get("client_secret") != self.client_secret:
            return error(401, "ERR_ACCESS_DENIED", "Invalid client_id or client_secret")
        with self._lock:
            self.access_tokens.clear()
            self.refresh_tokens.clear()
        return Response(204)

    # -- ad plans ----------------------------------------------------------------------------
    @staticmethod
    def _int_param(request: Request, name: str, default: int) -> int:
        raw = request.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _Invalid("ERR_WRONG_PARAMETER", f"{name} must be an integer") from None
        if value < 0:
            raise _Invalid("ERR_WRONG_PARAMETER", f"{name} must not be negative")
        return value

    def _ad_plans(self, request: Request) -> dict[str, Any]:
        limit = self._int_param(request, "limit", DEFAULT_LIST_LIMIT)
        offset = self._int_param(request, "offset", 0)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise _Invalid("ERR_WRONG_PARAMETER",
                           f"limit must be between 1 and {MAX_LIST_LIMIT}")
        fields = [f for f in (request.get("fields") or "id,name").split(",") if f]
        for f in fields:
            if f not in AD_PLAN_FIELDS:
                raise _Invalid("ERR_WRONG_PARAMETER", f"Unknown field {f!r} in fields")
        if "id" not in fields:
            fields.insert(0, "id")
        statuses = {"active", "blocked"}
        if request.get("_status__in"):
            statuses = set(str(request.get("_status__in")).split(","))
            unknown = statuses - set(STATUSES)
            if unknown:
                raise _Invalid("ERR_WRONG_PARAMETER", f"Unknown status {sorted(unknown)[0]!r}")
        ids: set[int] | None = None
        if request.get("_id__in"):
            ids = set(self._parse_ids(str(request.get("_id__in")).split(","), "_id__in"))
        with self._lock:
            plans = [p for _, p in sorted(self.ad_plans.items())
                     if p["status"] in statuses and (ids is None or p["id"] in ids)]
        items = [{f: p[f] for f in fields} for p in plans[offset:offset + limit]]
        return {"count": len(plans), "offset": offset, "limit": limit, "items": items}

    # -- statistics --------------------------------------------------------------------------
    @staticmethod
    def _parse_ids(raw: list[str], name: str = "id") -> list[int]:
        out = []
        for value in raw:
            try:
                out.append(int(value))
            except ValueError:
                raise _Invalid("ERR_WRONG_PARAMETER", f"{name} must be integers, got "
                               f"{value[:20]!r}") from None
        return out

    @staticmethod
    def _date(request: Request, name: str, default: dt.date | None) -> dt.date:
        raw = request.get(name)
        if raw is None or raw == "":
            if default is None:
                raise _Invalid("ERR_WRONG_DATE", f"{name} is required")
            return default
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            raise _Invalid("ERR_WRONG_DATE", f"{name} must be YYYY-MM-DD, got {raw!r}") from None

    def _stats(self, request: Request) -> dict[str, Any]:
        today = self.current_today()
        date_from = self._date(request, "date_from", None)
        date_to = self._date(request, "date_to", today)
        if date_from > date_to:
            raise _Invalid("ERR_WRONG_DATE", "date_from is later than date_to")
        earliest = today - dt.timedelta(days=MAX_STATS_DAYS_BACK)
        if date_from < earliest or (date_to - date_from).days + 1 > MAX_STATS_DAYS_BACK:
            raise _Invalid("ERR_LIMIT_EXCEEDED",
                           f"Statistics are available for at most {MAX_STATS_DAYS_BACK} days "
                           f"back (from {earliest.isoformat()})")
        metrics = (request.get("metrics") or "base").split(",")
        for m in metrics:
            if m not in METRIC_SETS:
                raise _Invalid("ERR_WRONG_PARAMETER", f"Unknown metrics {m!r}")
            if m != "base":
                raise _Invalid("ERR_WRONG_PARAMETER",
                               f"metrics={m} is not supported by the emulator; use base")
        attribution = request.get("attribution") or "conversion"
        if attribution not in ("conversion", "impression"):
            raise _Invalid("ERR_WRONG_PARAMETER", f"Unknown attribution {attribution!r}")
        raw_ids = [v for value in request.get_all("id") for v in value.split(",") if v]
        with self._lock:
            ids = self._parse_ids(raw_ids) if raw_ids else sorted(self.ad_plans)
            if len(ids) > MAX_STATS_OBJECTS:
                raise _Invalid("ERR_LIMIT_EXCEEDED",
                               f"Too many objects: {len(ids)}; at most {MAX_STATS_OBJECTS} "
                               "per request")
            missing = [i for i in ids if i not in self.ad_plans]
            if missing:
                raise _Invalid("ERR_WRONG_ADPLANS",
                               f"Ad plans not found or not accessible: {missing[:10]}")
            lo, hi = date_from.isoformat(), date_to.isoformat()
            by_key: dict[tuple[int, str], dict[str, Any]] = {}
            for r in self.rows:
                if lo <= r["date"] <= hi:
                    acc = by_key.setdefault((r["ad_plan_id"], r["date"]), {
                        "shows": 0, "clicks": 0, "spent": Decimal(0), "goals": 0})
                    for k in ("shows", "clicks", "spent", "goals"):
                        acc[k] += r[k]
        days = [date_from + dt.timedelta(days=n) for n in range((date_to - date_from).days + 1)]
        zero = {"shows": 0, "clicks": 0, "spent": Decimal(0), "goals": 0}
        grand = dict(zero)
        items = []
        for plan_id in dict.fromkeys(ids):
            total = dict(zero)
            rows = []
            for day in days:
                acc = by_key.get((plan_id, day.isoformat()), zero)
                rows.append({"date": day.isoformat(), "base": _base_metrics(
                    acc["shows"], acc["clicks"], acc["spent"], acc["goals"])})
                for k in total:
                    total[k] += acc[k]
            for k in grand:
                grand[k] += total[k]
            items.append({"id": plan_id, "rows": rows, "total": {"base": _base_metrics(
                total["shows"], total["clicks"], total["spent"], total["goals"])}})
        return {"items": items, "total": {"base": _base_metrics(
            grand["shows"], grand["clicks"], grand["spent"], grand["goals"])}}
