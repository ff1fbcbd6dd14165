"""Local emulator of the Google Ads API (REST) ``GoogleAdsService.SearchStream`` plus OAuth.

Faithful to the notes in ad_apis.md §A3:

- ``POST /{version}/customers/{CUSTOMER_ID}/googleAds:searchStream`` with ``{"query": GAQL}``;
  the customer id is 10 digits without hyphens;
- the answer is a JSON *array* of batches ``{"results": [...], "fieldMask", "requestId"}`` of up
  to 10,000 rows each; the final batch carries ``queryResourceConsumption``;
- REST JSON is camelCase and int64 values (``id``, ``impressions``, ``clicks``, ``costMicros``)
  are strings; money is ``metrics.cost_micros`` in ``customer.currency_code``;
- ``Authorization: Bearer`` from the refresh-token flow (``POST /token``, ``expires_in`` 3599,
  the refresh token is *not* rotated); ``login-customer-id`` is required when access goes
  through a manager account; ``developer-token`` is optional and ignored (sunset 2026-09-09);
- errors in the ``{"error": {code, message, status, details: [GoogleAdsFailure]}}`` envelope;
  ``RESOURCE_TEMPORARILY_EXHAUSTED`` (HTTP 429) carries ``quotaErrorDetails.retryDelay``.

The GAQL support is deliberately narrow: the daily campaign query (``segments.date``, the
``campaign.*``, ``customer.*`` and ``metrics.*`` fields in ``SUPPORTED_FIELDS``) ``FROM campaign
WHERE segments.date BETWEEN 'a' AND 'b'`` with an optional ``ORDER BY``/``LIMIT``. Other shapes
get a ``queryError`` the way the real service answers a query it cannot run.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ._base import EmulatorServer, Fault, Request, Response, SlidingWindow

TOKEN_PATH = "/token"
ADWORDS_SCOPE = "https://www.googleapis.com/auth/adwords"
ACCESS_TOKEN_TTL_S = 3599
BATCH_ROWS = 10_000
JSON_CT = "application/json; charset=UTF-8"

# GAQL field -> (resource key in the REST result, camelCase field name)
SUPPORTED_FIELDS: dict[str, tuple[str, str]] = {
    "segments.date": ("segments", "date"),
    "campaign.id": ("campaign", "id"),
    "campaign.name": ("campaign", "name"),
    "campaign.status": ("campaign", "status"),
    "campaign.resource_name": ("campaign", "resourceName"),
    "customer.id": ("customer", "id"),
    "customer.currency_code": ("customer", "currencyCode"),
    "customer.time_zone": ("customer", "timeZone"),
    "customer.resource_name": ("customer", "resourceName"),
    "metrics.impressions": ("metrics", "impressions"),
    "metrics.clicks": ("metrics", "clicks"),
    "metrics.cost_micros": ("metrics", "costMicros"),
}
RESOURCE_ORDER = ("customer", "campaign", "metrics", "segments")

_CANONICAL = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 "
          "access token, login cookie or other valid authentication credential. See "
          "https://developers.google.com/identity/sign-in/web/devconsole-project."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "Internal error encountered."),
    501: ("UNIMPLEMENTED", "Operation is not implemented, or supported, or enabled."),
    502: ("UNAVAILABLE", "The service is currently unavailable."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
    504: ("DEADLINE_EXCEEDED", "The request deadline was exceeded."),
}
PERMISSION_MESSAGE = (
    "User doesn't have permission to access customer. Note: If you're accessing a client "
    "customer, the manager's customer id must be set in the 'login-customer-id' header. See "
    "https://developers.google.com/google-ads/api/docs/concepts/call-structure#cid"
)

_PATH = re.compile(r"^/(?P<version>v\d+)/customers/(?P<cid>[^/]+)/googleAds:(?P<method>\w+)$")
_GAQL = re.compile(
    r"^\s*SELECT\s+(?P<select>.+?)\s+FROM\s+(?P<resource>\S+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>.+?))?"
    r"(?:\s+LIMIT\s+(?P<limit>\S+))?"
    r"\s*$",
    re.IGNORECASE | re.DOTALL,
)
_BETWEEN = re.compile(
    r"^segments\.date\s+BETWEEN\s+(['\"])(?P<a>[^'\"]*)\1\s+AND\s+(['\"])(?P<b>[^'\"]*)\3$",
    re.IGNORECASE,
)
_FIELD = re.compile(r"^[a-z_]+\.[a-z_]+$")


class _QueryError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _request_id() -> str:
    return secrets.token_urlsafe(16)[:22]


def _micros(amount: Decimal) -> int:
    return int((amount * 1_000_000).to_integral_value(rounding=ROUND_HALF_UP))


class GoogleAdsEmulator(EmulatorServer):
    """Google Ads API emulator over ``rows`` of daily campaign statistics."""

    def __init__(
        self,
        rows: list[dict] | None = None,
        *,
        customer_id: str = "1234567890",
        login_customer_id: str | None = None,
        currency: str = "RUB",
        time_zone: str = "Europe/Moscow",
        client_id: str = "demo-google-client",
        client_secret: str = "demo-google-secret",
        refresh_token: str = "demo-google-refresh",
        developer_token: str = "demo-dev-token",
        api_version: str = "v26",
        access_token_ttl_s: int = ACCESS_TOKEN_TTL_S,
        batch_rows: int = BATCH_ROWS,
        retry_delay_s: int = 30,
        rate_limit: int = 0,
        rate_window_s: float = 1.0,
        omit_zero_rows: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        if not re.fullmatch(r"\d{10}", customer_id):
            raise ValueError("customer_id must be 10 digits without hyphens")
        if login_customer_id is not None and not re.fullmatch(r"\d{10}", login_customer_id):
            raise ValueError("login_customer_id must be 10 digits without hyphens")
        if batch_rows < 1:
            raise ValueError("batch_rows must be >= 1")
        self.rows: list[dict] = [self._normalise_row(r) for r in (rows or [])]
        self.customer_id = customer_id
        self.login_customer_id = login_customer_id
        self.currency = currency
        self.time_zone = time_zone
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.developer_token = developer_token  # accepted and ignored, as after the sunset
        self.api_version = api_version
        self.access_token_ttl_s = int(access_token_ttl_s)
        self.batch_rows = int(batch_rows)
        self.retry_delay_s = retry_delay_s
        self.rate_limit = rate_limit  # requests per rate_window_s per customer; 0 = unlimited
        self.rate_window_s = rate_window_s
        self.omit_zero_rows = omit_zero_rows
        self._lock = threading.RLock()
        self._windows: dict[str, SlidingWindow] = {}
        self._access_tokens: dict[str, float] = {}  # token -> expires_at (unix seconds)
        self.refresh_token_revoked = False
        self.token_refreshes = 0
        self.queries: list[str] = []  # every GAQL query that was served

    @staticmethod
    def _normalise_row(row: dict) -> dict:
        out = dict(row)
        out["date"] = str(out["date"])
        out["campaign_id"] = int(out["campaign_id"])
        out["campaign_name"] = str(out.get("campaign_name", ""))
        out["status"] = str(out.get("status", "ENABLED"))
        out["impressions"] = int(out.get("impressions", 0))
        out["clicks"] = int(out.get("clicks", 0))
        out["cost"] = Decimal(str(out.get("cost", 0)))
        return out

    # -- test helpers ------------------------------------------------------------------------
    def expire_access_tokens(self) -> None:
        """Every access token issued so far is now expired (401 UNAUTHENTICATED on use)."""
        with self._lock:
            for token in self._access_tokens:
                self._access_tokens[token] = 0.0

    def revoke_refresh_token(self) -> None:
        """The user revoked access: the refresh token answers ``invalid_grant`` from now on."""
        with self._lock:
            self.refresh_token_revoked = True

    # -- request log: which routing headers arrived (never their secret values) ---------------
    def _log_start(self, request: Request, t: float) -> dict[str, Any]:
        entry = super()._log_start(request, t)
        entry["login_customer_id"] = request.header("login-customer-id")
        entry["developer_token_sent"] = request.header("developer-token") is not None
        return entry

    # -- responses ---------------------------------------------------------------------------
    def _error(self, http_status: int, error_code: dict[str, str] | None, message: str,
               *, quota_details: dict[str, str] | None = None,
               headers: dict[str, str] | None = None) -> Response:
        status, canonical = _CANONICAL.get(http_status, ("UNKNOWN", "Unknown error."))
        request_id = _request_id()
        body: dict[str, Any] = {"code": http_status, "message": canonical, "status": status}
        if error_code is not None:
            err: dict[str, Any] = {"errorCode": error_code, "message": message}
            if quota_details is not None:
                err["details"] = {"quotaErrorDetails": quota_details}
            body["details"] = [{
                "@type": "type.googleapis.com/google.ads.googleads."
                         f"{self.api_version}.errors.GoogleAdsFailure",
                "errors": [err],
                "requestId": request_id,
            }]
        return Response(http_status, {"error": body}, JSON_CT,
                        {"request-id": request_id, **(headers or {})})

    def _temporarily_exhausted(self, retry_delay_s: float) -> Response:
        delay = f"{retry_delay_s:g}s"
        return self._error(
            429, {"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"},
            f"Too many requests. Retry in {retry_delay_s:g} seconds.",
            quota_details={"rateScope": "ACCOUNT", "rateName": "Requests per account",
                           "retryDelay": delay},
        )

    @staticmethod
    def _oauth_error(status: int, error: str, description: str) -> Response:
        return Response(status, {"error": error, "error_description": description}, JSON_CT)

    @staticmethod
    def _not_found(path: str) -> Response:
        html = ("<!DOCTYPE html>\n<html lang=en><title>Error 404 (Not Found)!!1</title>"
                f"<p><b>404.</b> <ins>That's an error.</ins><p>The requested URL <code>{path}"
                "</code> was not found on this server. <ins>That's all we know.</ins>")
        return Response(404, html, "text/html; charset=UTF-8")

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if request.path == TOKEN_PATH:
            if fault.kind == "5xx":
                return self._oauth_error(int(fault.params["status"]), "internal_failure",
                                         "Backend Error")
            if fault.kind == "429":
                return self._oauth_error(429, "rate_limit_exceeded", "Rate Limit Exceeded")
            return self._oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        if fault.kind == "429":
            if fault.params.get("quota") == "daily":
                return self._error(
                    429, {"quotaError": "RESOURCE_EXHAUSTED"},
                    "Number of operations for basic access has been exceeded.",
                    quota_details={"rateScope": "DEVELOPER",
                                   "rateName": "Number of operations for basic access"},
                )
            return self._temporarily_exhausted(
                float(fault.params.get("retry_delay", self.retry_delay_s)))
        if fault.kind == "5xx":
            status = int(fault.params["status"])
            if status in (502, 503):
                return self._error(status, {"internalError": "TRANSIENT_ERROR"},
                                   "The service encountered a transient error.")
            return self._error(status, {"internalError": "INTERNAL_ERROR"},
                               "An internal error has occurred.")
        if fault.kind == "expired_token":
            return self._error(401, {"authenticationError": "OAUTH_TOKEN_EXPIRED"},
                               "Authentication of the request failed.")
        raise AssertionError(fault.kind)  # pragma: no cover

    # -- routing -----------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if request.path == TOKEN_PATH:
            if request.method != "POST":
                return self._oauth_error(405, "invalid_request", "Method Not Allowed")
            return self._token(request)
        match = _PATH.match(request.path)
        if (match is None or request.method != "POST"
                or match["version"] != self.api_version or match["method"] != "searchStream"):
            return self._not_found(request.path)
        denied = self._check_bearer(request)
        if denied is not None:
            return denied
        cid = match["cid"]
        if not cid.isdigit():
            return self._error(400, {"requestError": "INVALID_CUSTOMER_ID"},
                               f"Invalid customer ID '{cid}'.")
        login = request.header("login-customer-id")
        login = login.strip() if login is not None else None
        if self.login_customer_id is not None:  # reachable only through the manager account
            allowed = login == self.login_customer_id
        else:  # direct access; a login-customer-id, if sent, must be the customer itself
            allowed = login is None or login == self.customer_id
        if cid != self.customer_id or not allowed:
            return self._error(403, {"authorizationError": "USER_PERMISSION_DENIED"},
                               PERMISSION_MESSAGE)
        if self.rate_limit and self._window(cid).hit(request.arrived):
            return self._temporarily_exhausted(self.retry_delay_s)
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            return self._error(400, None, "Invalid JSON payload received.")
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return self._error(400, {"queryError": "EXPECTED_SELECT"},
                               "Error in query: the request has no query.")
        try:
            spec = self._parse(body["query"])
        except _QueryError as exc:
            return self._error(400, {"queryError": exc.code}, exc.message)
        with self._lock:
            self.queries.append(body["query"])
        return self._stream(spec)

    def _window(self, key: str) -> SlidingWindow:
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = SlidingWindow(self.rate_limit, self.rate_window_s)
            return window

    # -- OAuth -------------------------------------------------------------------------------
    def _token(self, request: Request) -> Response:
        ctype = (request.header("Content-Type") or "").lower()
        try:
            if "json" in ctype:
                body = request.json()
            else:
                body = dict(Request("POST", "/?" + request.body.decode(), {}, b"").query_pairs)
        except (ValueError, UnicodeDecodeError):
            return self._oauth_error(400, "invalid_request", "Invalid request body")
        if not isinstance(body, dict):
            return self._oauth_error(400, "invalid_request", "Invalid request body")
        grant = body.get("grant_type")
        if not grant:
            return self._oauth_error(400, "invalid_request", "Missing required parameter: "
                                     "grant_type")
        if grant != "refresh_token":
            return self._oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")
        if body.get("client_id") != self.client_id:
            return self._oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if body.get("client_secret") != self.client_secret:
            return self._oauth_error(401, "invalid_client", "Unauthorized")
        if not body.get("refresh_token"):
            return self._oauth_error(400, "invalid_request",
                                     "Missing required parameter: refresh_token")
        with self._lock:
            if body["refresh_token"] != self.refresh_token:
                return self._oauth_error(400, "invalid_grant", "Bad Request")
            if self.refresh_token_revoked:
                return self._oauth_error(400, "invalid_grant",
                                         "Token has been expired or revoked.")
            access = "ya29.a0" + secrets.token_urlsafe(96)
            self._access_tokens[access] = time.time() + self.access_token_ttl_s
            self.token_refreshes += 1
        # Google does not rotate refresh tokens: no refresh_token in the answer.
        return Response(200, {"access_token": access, "expires_in": self.access_token_ttl_s,
                              "scope": ADWORDS_SCOPE, "token_type": "Bearer"}, JSON_CT)

    def _check_bearer(self, request: Request) -> Response | None:
        auth = request.header("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return self._error(401, {"authenticationError": "OAUTH_TOKEN_HEADER_INVALID"},
                               "Oauth token HTTP header is malformed.")
        with self._lock:
            expires_at = self._access_tokens.get(token)
        if expires_at is None:
            return self._error(401, {"authenticationError": "OAUTH_TOKEN_INVALID"},
                               "Oauth token is invalid.")
        if time.time() >= expires_at:
            return self._error(401, {"authenticationError": "OAUTH_TOKEN_EXPIRED"},
                               "Oauth token is expired.")
        return None

    # -- GAQL --------------------------------------------------------------------------------
    def _parse(self, query: str) -> dict[str, Any]:
        text = query.strip()
        if not re.match(r"(?i)^SELECT\b", text):
            raise _QueryError("EXPECTED_SELECT", "Error in query: expected SELECT.")
        m = _GAQL.match(text)
        if m is None:
            if not re.search(r"(?i)\bFROM\b", text):
                raise _QueryError("EXPECTED_FROM", "Error in query: expected FROM.")
            raise _QueryError("UNEXPECTED_INPUT", "Error in query: unexpected input.")
        fields = [f.strip() for f in m["select"].split(",")]
        for f in fields:
            if not _FIELD.match(f) or f not in SUPPORTED_FIELDS:
                raise _QueryError("UNRECOGNIZED_FIELD",
                                  f"Unrecognized field in the query: '{f}'. (The emulator "
                                  f"serves {', '.join(SUPPORTED_FIELDS)}.)")
        if len(set(fields)) != len(fields):
            raise _QueryError("DUPLICATE_FIELDS", "Error in query: duplicate field in SELECT.")
        resource = m["resource"]
        if resource != "campaign":
            raise _QueryError("BAD_RESOURCE_TYPE_IN_FROM_CLAUSE",
                              f"Error in query: the emulator serves FROM campaign, not "
                              f"'{resource}'.")
        if "segments.date" not in fields or "campaign.id" not in fields:
            raise _QueryError("EXPECTED_DIMENSION_FIELD_IN_SELECT_CLAUSE",
                              "The emulator serves the daily campaign query only: select "
                              "segments.date and campaign.id.")
        where = (m["where"] or "").strip()
        if not where:
            raise _QueryError("EXPECTED_FILTERS_ON_DATE_RANGE",
                              "A finite date range filter on 'segments.date' is required when "
                              "it is selected.")
        between = _BETWEEN.match(where)
        if between is None:
            raise _QueryError("UNEXPECTED_INPUT",
                              f"Error in query: the emulator supports only "
                              f"WHERE segments.date BETWEEN 'YYYY-MM-DD' AND 'YYYY-MM-DD', "
                              f"got: {where}")
        dates = []
        for raw in (between["a"], between["b"]):
            try:
                if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
                    raise ValueError(raw)
                dates.append(dt.date.fromisoformat(raw))
            except ValueError:
                raise _QueryError("INVALID_DATE_FORMAT",
                                  f"Invalid date format: '{raw}'. Use YYYY-MM-DD.") from None
        if dates[0] > dates[1]:
            raise _QueryError("INVALID_VALUE_WITH_BETWEEN_OPERATOR",
                              "The first value of BETWEEN must not be later than the second.")
        order: list[tuple[str, bool]] = []
        for item in filter(None, (s.strip() for s in (m["order"] or "").split(","))):
            parts = item.split()
            if len(parts) > 2 or parts[0] not in fields or (
                    len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC")):
                raise _QueryError("EXPECTED_REFERENCED_FIELD_IN_SELECT_CLAUSE",
                                  f"Error in query: ORDER BY item '{item}' must be a selected "
                                  "field with optional ASC or DESC.")
            order.append((parts[0], len(parts) == 2 and parts[1].upper() == "DESC"))
        limit = None
        if m["limit"] is not None:
            if not m["limit"].isdigit() or int(m["limit"]) < 1:
                raise _QueryError("BAD_LIMIT_VALUE", f"Invalid LIMIT value: {m['limit']}.")
            limit = int(m["limit"])
        return {"fields": fields, "from": dates[0].isoformat(), "to": dates[1].isoformat(),
                "order": order, "limit": limit}

    # -- results -----------------------------------------------------------------------------
    def _value(self, field: str, row: dict) -> str:
        cid = self.customer_id
        return {
            "segments.date": row["date"],
            "campaign.id": str(row["campaign_id"]),
            "campaign.name": row["campaign_name"],
            "campaign.status": row["status"],
            "campaign.resource_name": f"customers/{cid}/campaigns/{row['campaign_id']}",
            "customer.id": cid,
            "customer.currency_code": self.currency,
            "customer.time_zone": self.time_zone,
            "customer.resource_name": f"customers/{cid}",
            "metrics.impressions": str(row["impressions"]),
            "metrics.clicks": str(row["clicks"]),
            "metrics.cost_micros": str(_micros(row["cost"])),
        }[field]

    def _result(self, fields: list[str], row: dict) -> dict[str, Any]:
        out: dict[str, dict[str, str]] = {}
        for field in fields:
            resource, name = SUPPORTED_FIELDS[field]
            out.setdefault(resource, {})[name] = self._value(field, row)
        # Every resource touched carries its resourceName (segments and metrics are not resources).
        for resource in ("customer", "campaign"):
            if resource in out:
                out[resource] = {"resourceName": self._value(f"{resource}.resource_name", row),
                                 **out[resource]}
        return {k: out[k] for k in RESOURCE_ORDER if k in out}

    def _stream(self, spec: dict[str, Any]) -> Response:
        with self._lock:  # tests and the demo edit ``rows`` in place: normalise on read
            rows = [self._normalise_row(r) for r in self.rows
                    if spec["from"] <= str(r["date"]) <= spec["to"]]
        if self.omit_zero_rows:
            rows = [r for r in rows if r["impressions"] or r["clicks"] or r["cost"]]
        rows.sort(key=lambda r: (r["date"], r["campaign_id"]))
        for field, desc in reversed(spec["order"]):
            key = (lambda r, f=field: r["campaign_id"]) if field == "campaign.id" else (
                lambda r, f=field: self._value(f, r))
            rows.sort(key=key, reverse=desc)
        if spec["limit"] is not None:
            rows = rows[: spec["limit"]]
        request_id = _request_id()
        mask = ",".join(f"{SUPPORTED_FIELDS[f][0]}.{SUPPORTED_FIELDS[f][1]}"
                        for f in spec["fields"])
        results = [self._result(spec["fields"], r) for r in rows]
        batches: list[dict[str, Any]] = []
        for start in range(0, len(results), self.batch_rows):
            batches.append({"results": results[start: start + self.batch_rows],
                            "fieldMask": mask, "requestId": request_id})
        if not batches:  # proto3 JSON omits an empty repeated field
            batches.append({"fieldMask": mask, "requestId": request_id})
        batches[-1]["queryResourceConsumption"] = str(100 + 3 * len(rows))
        return Response(200, batches, JSON_CT, {"request-id": request_id})
