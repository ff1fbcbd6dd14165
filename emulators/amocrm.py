"""Local emulator of the amoCRM / Kommo API v4 subset that voronka extracts.

Faithful to docs/reference notes (crm_apis.md §1.1-1.12): OAuth2 with single-use rotating
refresh tokens, Bearer access tokens (or a long-lived token), HAL+JSON pages with
``_links.next``, HTTP 204 for empty results, problem+json errors, 7 req/s sliding-window rate
limit (429). Besides leads and contacts it serves companies, the buyer funnel (customers, their
statuses and transactions) and deleted leads, which only ``with=only_deleted`` returns
(crm_apis.md §1.4, §1.9). /api/v4/events serves lead and buyer events alike
(``lead_status_changed``, ``customer_status_changed``); ``filter[type]`` takes one type or
several, comma-separated. Buyer events may come in their own data key, ``customer_events``
(the synthetic business keeps them apart), and join ``events``.

Switches for accounts that lack a feature: ``customers_mode="disabled"`` answers 422 on every
``/api/v4/customers*`` path (buyers off); ``empty_entities`` answers 204 No Content for those
collections whatever the data holds (e.g. ``("companies", "deleted_leads")``: no companies,
an empty bin); ``unpaid_entities`` answers 402 Payment Required for them (a tariff without it).

Fault switch ``edit_between_pages`` (entities, settable after construction): after serving a
page of one of those collections the emulator edits the page's first record it has not
edited before (``updated_at`` bumped, as a user's edit does). Under ``order[updated_at]`` the
record moves to the end and every later record shifts up one place: the record that was first
on the next page is skipped by a client that pages by ``page=N`` (issue 12, item 1).
``page_edits`` lists what was edited.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from ._base import EmulatorServer, Fault, Request, Response, SlidingWindow

HAL = "application/hal+json"
PROBLEM = "application/problem+json"
OAUTH_PROBLEM_TYPE = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"

ENTITY_KEYS = ("users", "pipelines", "loss_reasons", "contacts", "leads", "events",
               "companies", "customers", "customer_statuses", "transactions")
PAGED_MAX_LIMIT = {"leads": 250, "contacts": 250, "companies": 250, "customers": 250,
                   "transactions": 250, "users": 250, "events": 100}
# entities with /api/v4/<entity> and /api/v4/<entity>/<id> (transactions live under customers)
TOP_LEVEL_LISTS = ("leads", "contacts", "companies", "customers", "users", "events")
# where an item's self link points when that is not /api/v4/<entity>/<id>
SELF_PATHS = {"transactions": "customers/transactions"}
# contact references that amoCRM embeds only when the request says with=contacts
CONTACTS_ON_REQUEST = ("leads", "customers")
CUSTOMERS_MODES = ("periodicity", "segments", "disabled")
# what ``empty_entities`` / ``unpaid_entities`` may name: the collections plus the bin
SWITCHABLE = (*ENTITY_KEYS, "deleted_leads")
# data keys whose items are events too: served by /api/v4/events with the rest
EVENT_FEEDS = ("customer_events",)
DEFAULT_LIMIT = 50
REFRESH_TOKEN_TTL_S = 90 * 86400
AUTH_CODE_TTL_S = 20 * 60

_STATUS_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def problem(status: int, detail: str, *, headers: dict[str, str] | None = None,
            **extra: Any) -> Response:
    body: dict[str, Any] = {
        "title": _STATUS_TITLES.get(status, "Error"),
        "type": f"https://httpstatus.es/{status}",
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return Response(status, body, PROBLEM, headers)


def validation_problem(path: str, code: str, detail: str) -> Response:
    body = {
        "validation-errors": [
            {"request_id": "0", "errors": [{"code": code, "path": path, "detail": detail}]}
        ],
        "title": "Bad Request",
        "type": "https://httpstatus.es/400",
        "status": 400,
        "detail": "Request validation failed",
    }
    return Response(400, body, PROBLEM)


def oauth_problem(status: int, detail: str, hint: str | None = None) -> Response:
    body: dict[str, Any] = {}
    if hint is not None:
        body["hint"] = hint
    body.update({
        "title": _STATUS_TITLES.get(status, "Error"),
        "type": OAUTH_PROBLEM_TYPE,
        "status": status,
        "detail": detail,
    })
    return Response(status, body, PROBLEM)


def _b64(obj: dict[str, Any]) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _event_id() -> str:
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    return "".join(secrets.choice(alphabet) for _ in range(26))


class _BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class AmoCRMEmulator(EmulatorServer):
    """amoCRM v4 emulator; see the module docstring and docs/ARCHITECTURE.md."""

    def __init__(
        self,
        data: dict[str, list[dict]] | None = None,
        *,
        account_id: int = 31990211,
        subdomain: str = "voronka-demo",
        account_name: str = "Voronka Demo",
        client_id: str = "demo-client",
        client_secret: str = "demo-secret",
        refresh_token: str = "demo-refresh-0",
        redirect_uri: str = "http://127.0.0.1/callback",
        authorization_code: str | None = "demo-auth-code",
        long_lived_token: str | None = None,
        customers_mode: str = "periodicity",
        empty_entities: tuple[str, ...] = (),
        unpaid_entities: tuple[str, ...] = (),
        edit_between_pages: tuple[str, ...] = (),
        rate_limit_per_s: float = 7.0,
        access_token_ttl_s: int = 86400,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        data = data or {}
        unknown = set(data) - set(ENTITY_KEYS) - set(EVENT_FEEDS)
        if unknown:
            raise ValueError(f"unknown amoCRM entities in data: {sorted(unknown)}")
        if customers_mode not in CUSTOMERS_MODES:
            raise ValueError(f"customers_mode must be one of {CUSTOMERS_MODES}")
        self.customers_mode = customers_mode
        unknown = (set(empty_entities) | set(unpaid_entities)
                   | set(edit_between_pages)) - set(SWITCHABLE)
        if unknown:
            raise ValueError(f"unknown amoCRM entities to switch: {sorted(unknown)}")
        self.empty_entities = set(empty_entities)
        self.unpaid_entities = set(unpaid_entities)
        self.edit_between_pages = set(edit_between_pages)
        self.page_edits: list[tuple[str, Any]] = []  # (entity, id) edited by that switch
        self.data: dict[str, list[dict]] = {k: copy.deepcopy(list(data.get(k, []))) for k in
                                            ENTITY_KEYS}
        for feed in EVENT_FEEDS:
            self.data["events"] += copy.deepcopy(list(data.get(feed, [])))
        self.account_id = account_id
        self.subdomain = subdomain
        self.account_name = account_name
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.access_token_ttl_s = access_token_ttl_s
        self.rate_limit_per_s = rate_limit_per_s
        self.rate_window = SlidingWindow(rate_limit_per_s, 1.0)
        self.long_lived_token = long_lived_token
        self._state_lock = threading.RLock()
        now = time.time()
        # refresh token -> {"state": "active"|"spent", "issued_at": float}
        self._refresh_tokens: dict[str, dict[str, Any]] = {
            refresh_token: {"state": "active", "issued_at": now}
        }
        # access token -> expires_at (unix seconds)
        self._access_tokens: dict[str, float] = {}
        # auth code -> {"issued_at": float, "used": bool}
        self._auth_codes: dict[str, dict[str, Any]] = {}
        if authorization_code:
            self._auth_codes[authorization_code] = {"issued_at": now, "used": False}
        self.token_refreshes = 0

    # -- public helpers ----------------------------------------------------------------------
    @property
    def current_refresh_token(self) -> str | None:
        """The one refresh token that is still usable (tests and demo setup use it)."""
        with self._state_lock:
            active = [t for t, v in self._refresh_tokens.items() if v["state"] == "active"]
        return active[-1] if active else None

    def issue_authorization_code(self) -> str:
        code = "def502" + secrets.token_hex(24)
        with self._state_lock:
            self._auth_codes[code] = {"issued_at": time.time(), "used": False}
        return code

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is now expired (401 on use)."""
        with self._state_lock:
            for token in self._access_tokens:
                self._access_tokens[token] = 0.0

    def update_lead(self, lead_id: int, **changes: Any) -> dict:
        """Change a lead and bump ``updated_at`` (strictly increasing).

        A change of ``status_id``/``pipeline_id`` also appends a ``lead_status_changed`` event,
        as amoCRM does. Returns a copy of the updated lead.
        """
        with self._state_lock:
            lead = self._find("leads", lead_id)
            before = (lead.get("pipeline_id"), lead.get("status_id"))
            self._touch(lead, changes)
            after = (lead.get("pipeline_id"), lead.get("status_id"))
            if after != before and before[1] is not None:
                self.data["events"].append({
                    "id": _event_id(),
                    "type": "lead_status_changed",
                    "entity_id": lead["id"],
                    "entity_type": "lead",
                    "created_by": int(changes.get("updated_by", 0) or 0),
                    "created_at": lead["updated_at"],
                    "value_after": [{"lead_status": {"id": after[1], "pipeline_id": after[0]}}],
                    "value_before": [{"lead_status": {"id": before[1], "pipeline_id": before[0]}}],
                    "account_id": self.account_id,
                })
            return copy.deepcopy(lead)

    def update_contact(self, contact_id: int, **changes: Any) -> dict:
        return self.update_item("contacts", contact_id, **changes)

    def update_item(self, entity: str, item_id: Any, **changes: Any) -> dict:
        """Change any stored item (company, customer, transaction...) and bump ``updated_at``
        the way an edit in amoCRM does, so incremental extraction sees it. Returns a copy."""
        with self._state_lock:
            item = self._find(entity, item_id)
            self._touch(item, changes)
            return copy.deepcopy(item)

    def delete_lead(self, lead_id: int, **changes: Any) -> dict:
        """Move a lead to the bin: from now on only ``with=only_deleted`` returns it.

        As in amoCRM the deletion bumps ``updated_at`` and logs a ``lead_deleted`` event.
        Returns a copy of the stored (full) lead.
        """
        with self._state_lock:
            lead = self.update_lead(lead_id, is_deleted=True, **changes)
            self.data["events"].append({
                "id": _event_id(), "type": "lead_deleted", "entity_id": lead["id"],
                "entity_type": "lead", "created_by": 0, "created_at": lead["updated_at"],
                "value_after": [], "value_before": [], "account_id": self.account_id,
            })
            return lead

    @staticmethod
    def _touch(item: dict, changes: dict[str, Any]) -> None:
        """Apply ``changes``; ``updated_at`` is the given one or strictly later than before."""
        new_updated = changes.pop("updated_at", None)
        item.update(changes)
        if new_updated is None:
            new_updated = max(int(time.time()), int(item.get("updated_at") or 0) + 1)
        item["updated_at"] = int(new_updated)

    def _edit_after_page(self, entity: str, chunk: list[dict]) -> None:
        """The ``edit_between_pages`` fault: a user edits a record the client has just read
        (the first one on the page not edited by this fault before: users do not edit one
        record forever)."""
        done = {i for e, i in self.page_edits if e == entity}
        item = next((i for i in chunk if i.get("id") not in done), None)
        if item is not None:
            self._touch(item, {"updated_by": 0})
            self.page_edits.append((entity, item.get("id")))

    def _find(self, entity: str, item_id: Any) -> dict:
        for item in self.data[entity]:
            if str(item.get("id")) == str(item_id):
                return item
        raise KeyError(f"{entity} {item_id} not found")

    # -- faults ------------------------------------------------------------------------------
    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            retry_after = int(fault.params.get("retry_after", 1))
            return problem(
                429,
                "You have sent too many requests (7 requests per second for IP)",
                headers={"Retry-After": str(retry_after)},
                retry_after=retry_after,
            )
        if fault.kind == "5xx":
            status = int(fault.params.get("status", 500))
            if status == 500:
                body = {"title": "ErrInternalServer", "status": 500,
                        "detail": "Internal server error", "trace_id": uuid.uuid4().hex}
                return Response(500, body, PROBLEM)
            # Gateway errors come from the front nginx as HTML, not problem+json.
            title = f"{status} {_STATUS_TITLES.get(status, 'Server Error')}"
            html = (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
                    f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
                    "</body>\r\n</html>\r\n")
            return Response(status, html, "text/html")
        if fault.kind == "expired_token":
            return problem(401, "Access token expired or revoked")
        raise AssertionError(fault.kind)  # pragma: no cover

    # -- routing -----------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if self.rate_window.hit():
            return problem(
                429,
                "You have sent too many requests (more than "
                f"{self.rate_limit_per_s:g} requests per second)",
                retry_after=1,
            )
        path = request.path.rstrip("/") or "/"
        if path == "/oauth2/access_token":
            if request.method != "POST":
                return problem(405, "Method not allowed")
            return self._oauth(request)
        if not path.startswith("/api/v4/"):
            return problem(404, f"Path {request.path} not found")
        auth = self._check_bearer(request)
        if auth is not None:
            return auth
        if request.method not in ("GET", "HEAD"):
            return problem(405, "The emulator is read-only")
        parts = path[len("/api/v4/"):].split("/")
        try:
            return self._route(request, parts)
        except _BadRequest as exc:
            return exc.response

    def _route(self, request: Request, parts: list[str]) -> Response:
        switched = self._switched(request, parts)
        if switched is not None:
            return switched
        head = parts[0]
        if parts == ["account"]:
            return self._account()
        if head == "leads" and len(parts) >= 2 and parts[1] == "pipelines":
            return self._pipelines(parts[2:])
        if parts == ["leads", "loss_reasons"]:
            return self._list_all("loss_reasons", "/api/v4/leads/loss_reasons")
        if head == "customers" and len(parts) >= 2 and not parts[1].isdigit():
            return self._customers_sub(request, parts[1:])
        if head == "customers" and len(parts) == 3 and parts[2] == "transactions":
            return self._paged(request, "transactions", where=("customer_id", parts[1]))
        if head in TOP_LEVEL_LISTS:
            if len(parts) == 1:
                return self._paged(request, head)
            if len(parts) == 2:
                return self._single(request, head, parts[1])
        return problem(404, f"Path {request.path} not found")

    def _entity_of(self, request: Request, parts: list[str]) -> str | None:
        """The collection a list request reads (``deleted_leads`` for the bin), else None."""
        head = parts[0]
        if head == "customers" and len(parts) >= 2:
            return {"statuses": "customer_statuses", "transactions": "transactions"}.get(
                parts[-1])
        if head == "leads" and len(parts) == 1 and "only_deleted" in self._withs(request):
            return "deleted_leads"
        return head if len(parts) == 1 and head in TOP_LEVEL_LISTS else None

    def _switched(self, request: Request, parts: list[str]) -> Response | None:
        """The answers of an account without a feature: 422 buyers off, 402, 204 empty."""
        if parts[0] == "customers" and self.customers_mode == "disabled":
            return problem(422, "Customers are disabled for this account: turn on the "
                                "periodicity mode (PATCH /api/v4/customers/mode)")
        entity = self._entity_of(request, parts)
        if entity in self.unpaid_entities:
            return problem(402, "Payment Required: this feature is not in the account's tariff")
        if entity in self.empty_entities:
            return Response(204)
        return None

    def _customers_sub(self, request: Request, rest: list[str]) -> Response:
        """/api/v4/customers/statuses and /api/v4/customers/transactions (crm_apis.md §1.9)."""
        if rest == ["transactions"]:
            return self._paged(request, "transactions")
        if rest == ["statuses"]:
            return self._list_all("customer_statuses", "/api/v4/customers/statuses",
                                  key="statuses")
        return problem(404, f"Path {request.path} not found")

    # -- OAuth -------------------------------------------------------------------------------
    def _oauth(self, request: Request) -> Response:
        ctype = (request.header("Content-Type") or "").lower()
        try:
            if "application/x-www-form-urlencoded" in ctype:
                body = dict(Request("POST", "/?" + request.body.decode(), {}, b"").query_pairs)
            else:
                body = request.json()
        except (ValueError, UnicodeDecodeError):
            return oauth_problem(400, "The request body is not valid JSON", "Invalid body")
        if not isinstance(body, dict):
            return oauth_problem(400, "The request body must be a JSON object", "Invalid body")
        grant = body.get("grant_type")
        if grant not in ("refresh_token", "authorization_code"):
            return oauth_problem(
                400, "The authorization grant type is not supported by the authorization server.",
                "Check that all required parameters have been provided",
            )
        for name in ("client_id", "client_secret"):
            if not body.get(name):
                return oauth_problem(400, f"The request is missing a required parameter: {name}",
                                     f"Check the `{name}` parameter")
        if body["client_id"] != self.client_id or body["client_secret"] != self.client_secret:
            return oauth_problem(401, "Client authentication failed",
                                 "Client authentication failed")
        now = time.time()
        with self._state_lock:
            if grant == "refresh_token":
                token = body.get("refresh_token")
                if not token:
                    return oauth_problem(
                        400, "The request is missing a required parameter: refresh_token",
                        "Check the `refresh_token` parameter")
                info = self._refresh_tokens.get(token)
                if info is None:
                    return oauth_problem(401, "The refresh token is invalid.",
                                         "Cannot decrypt the refresh token")
                if info["state"] != "active":
                    return oauth_problem(401, "The refresh token is invalid.",
                                         "Token has been revoked")
                if now - info["issued_at"] > REFRESH_TOKEN_TTL_S:
                    return oauth_problem(401, "The refresh token is invalid.",
                                         "Token has expired")
                info["state"] = "spent"
            else:
                code = body.get("code")
                cinfo = self._auth_codes.get(code) if code else None
                if cinfo is None or cinfo["used"]:
                    return oauth_problem(
                        400, "The provided authorization grant is invalid, expired or revoked",
                        "Authorization code has been revoked" if cinfo else "Cannot decrypt the "
                        "authorization code")
                if now - cinfo["issued_at"] > AUTH_CODE_TTL_S:
                    return oauth_problem(400, "The provided authorization grant is invalid",
                                         "Authorization code has expired")
                if body.get("redirect_uri") != self.redirect_uri:
                    return oauth_problem(400, "The provided authorization grant is invalid",
                                         "Invalid redirect URI")
                cinfo["used"] = True
            access = self._new_access_token(now)
            refresh = "def50200" + secrets.token_hex(48)
            self._access_tokens[access] = now + self.access_token_ttl_s
            self._refresh_tokens[refresh] = {"state": "active", "issued_at": now}
            self.token_refreshes += 1
        return Response(200, {
            "token_type": "Bearer",
            "expires_in": self.access_token_ttl_s,
            "server_time": int(now),
            "access_token": access,
            "refresh_token": refresh,
        }, "application/json")

    def _new_access_token(self, now: float) -> str:
        header = _b64({"typ": "JWT", "alg": "RS256"})
        payload = _b64({
            "aud": self.client_id,
            "jti": secrets.token_hex(20),
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + self.access_token_ttl_s),
            "sub": "1",
            "account_id": self.account_id,
            "scopes": ["crm"],
        })
        return f"{header}.{payload}.{secrets.token_urlsafe(32)}"

    def _check_bearer(self, request: Request) -> Response | None:
        auth = request.header("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return problem(401, "Authorization header with a Bearer token is required")
        token = token.strip()
        if self.long_lived_token and token == self.long_lived_token:
            return None
        with self._state_lock:
            expires_at = self._access_tokens.get(token)
        if expires_at is None:
            return problem(401, "Invalid access token")
        if time.time() >= expires_at:
            return problem(401, "Access token expired")
        return None

    # -- payload helpers ---------------------------------------------------------------------
    def _self_link(self, path: str) -> dict[str, dict[str, str]]:
        return {"self": {"href": f"{self.base_url}{path}"}}

    def _render(self, entity: str, item: dict, withs: set[str],
                leads_index: dict[str, list[Any]] | None = None) -> dict:
        if entity == "leads" and "only_deleted" in withs:
            return self._render_deleted_lead(item)
        out = copy.deepcopy(item)
        item_id = out.get("id")
        links = out.get("_links") or {}
        links.setdefault(
            "self", {"href": f"{self.base_url}/api/v4/{SELF_PATHS.get(entity, entity)}/{item_id}"})
        out["_links"] = links
        if entity in CONTACTS_ON_REQUEST:
            emb = out.get("_embedded")
            if "contacts" in withs:
                emb = dict(emb or {})
                emb["contacts"] = [self._with_link(c, "contacts") for c in emb.get("contacts", [])]
                out["_embedded"] = emb
            elif isinstance(emb, dict):
                emb.pop("contacts", None)
        elif entity == "transactions":
            emb = dict(out.get("_embedded") or {})
            emb["customer"] = self._with_link(
                emb.get("customer") or {"id": out.get("customer_id")}, "customers")
            out["_embedded"] = emb
        elif entity == "contacts":
            emb = out.get("_embedded")
            if "leads" in withs:
                emb = dict(emb or {})
                emb["leads"] = [
                    {"id": lead_id, "_links": self._self_link(f"/api/v4/leads/{lead_id}")}
                    for lead_id in (leads_index if leads_index is not None
                                    else self._leads_by_contact()).get(str(item_id), [])
                ]
                out["_embedded"] = emb
            elif isinstance(emb, dict):
                emb.pop("leads", None)
        elif entity == "events":
            out["_links"] = {"self": {"href": f"{self.base_url}/api/v4/events/{item_id}"}}
        return out

    def _render_deleted_lead(self, lead: dict) -> dict:
        """What ``with=only_deleted`` shows of a lead in the bin: its id, the modification
        date and ``is_deleted`` (crm_apis.md §1.4), nothing else."""
        lead_id = lead.get("id")
        return {"id": lead_id, "updated_at": lead.get("updated_at"), "is_deleted": True,
                "_links": self._self_link(f"/api/v4/leads/{lead_id}")}

    def _scope(self, entity: str, withs: set[str]) -> list[dict]:
        """The stored items a request may see: a deleted lead only under ``with=only_deleted``,
        which in turn shows nothing but deleted leads."""
        items = self.data[entity]
        if entity == "events" and self.customers_mode == "disabled":
            return [i for i in items if i.get("entity_type") != "customer"]  # no buyers
        if entity != "leads":
            return items
        deleted = "only_deleted" in withs
        return [i for i in items if bool(i.get("is_deleted")) == deleted]

    def _leads_by_contact(self) -> dict[str, list[Any]]:
        index: dict[str, list[Any]] = {}
        for lead in self._scope("leads", set()):
            for ref in (lead.get("_embedded") or {}).get("contacts", []):
                index.setdefault(str(ref.get("id")), []).append(lead["id"])
        return index

    def _with_link(self, ref: dict, entity: str) -> dict:
        ref = dict(ref)
        ref.setdefault("_links", self._self_link(f"/api/v4/{entity}/{ref.get('id')}"))
        return ref

    # -- endpoints ---------------------------------------------------------------------------
    def _account(self) -> Response:
        return Response(200, {
            "id": self.account_id,
            "name": self.account_name,
            "subdomain": self.subdomain,
            "created_at": 1700000000,
            "created_by": 0,
            "updated_at": 1700000000,
            "updated_by": 0,
            "current_user_id": (self.data["users"][0]["id"] if self.data["users"] else 0),
            "country": "RU",
            "currency": "RUB",
            "currency_symbol": "₽",
            "customers_mode": self.customers_mode,
            "is_unsorted_on": True,
            "is_loss_reason_enabled": True,
            "is_helpbot_enabled": False,
            "is_technical_account": False,
            "contact_name_display_order": 1,
            "timezone": "Europe/Moscow",
            "_links": self._self_link("/api/v4/account"),
        }, HAL)

    def _pipelines(self, rest: list[str]) -> Response:
        with self._state_lock:
            pipelines = [self._render_pipeline(p) for p in self.data["pipelines"]]
        if not rest:
            if not pipelines:
                return Response(204)
            return Response(200, {
                "_total_items": len(pipelines),
                "_links": self._self_link("/api/v4/leads/pipelines"),
                "_embedded": {"pipelines": pipelines},
            }, HAL)
        match = [p for p in pipelines if str(p["id"]) == rest[0]]
        if not match:
            return problem(404, f"Pipeline {rest[0]} not found")
        pipeline = match[0]
        if len(rest) == 1:
            return Response(200, pipeline, HAL)
        if rest[1] == "statuses" and len(rest) == 2:
            statuses = pipeline["_embedded"]["statuses"]
            return Response(200, {
                "_total_items": len(statuses),
                "_links": self._self_link(f"/api/v4/leads/pipelines/{rest[0]}/statuses"),
                "_embedded": {"statuses": statuses},
            }, HAL)
        return problem(404, "Not found")

    def _render_pipeline(self, pipeline: dict) -> dict:
        out = copy.deepcopy(pipeline)
        pid = out.get("id")
        out.setdefault("_links", self._self_link(f"/api/v4/leads/pipelines/{pid}"))
        emb = out.setdefault("_embedded", {})
        for status in emb.setdefault("statuses", []):
            status.setdefault(
                "_links",
                self._self_link(f"/api/v4/leads/pipelines/{pid}/statuses/{status.get('id')}"),
            )
        return out

    def _list_all(self, entity: str, path: str, key: str | None = None) -> Response:
        """An unpaged collection with ``_total_items``; ``key`` is its ``_embedded`` name."""
        with self._state_lock:
            items = copy.deepcopy(self.data[entity])
        if not items:
            return Response(204)
        for item in items:
            item.setdefault("_links", self._self_link(f"{path}/{item.get('id')}"))
        return Response(200, {
            "_total_items": len(items),
            "_links": self._self_link(path),
            "_embedded": {key or entity: items},
        }, HAL)

    def _single(self, request: Request, entity: str, item_id: str) -> Response:
        withs = self._withs(request)
        with self._state_lock:
            try:
                item = self._find(entity, item_id)
            except KeyError:
                return Response(204)
            if not any(i is item for i in self._scope(entity, withs)):
                return Response(204)
            return Response(200, self._render(entity, item, withs), HAL)

    @staticmethod
    def _withs(request: Request) -> set[str]:
        out: set[str] = set()
        for value in request.get_all("with"):
            out.update(v.strip() for v in value.split(",") if v.strip())
        return out

    @staticmethod
    def _int(request: Request, name: str, default: int | None) -> int | None:
        raw = request.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise _BadRequest(validation_problem(name, "InvalidType",
                                                 f"{name} must be an integer")) from None

    def _paged(self, request: Request, entity: str,
               where: tuple[str, str] | None = None) -> Response:
        """One page of a collection; ``where`` = (field, value) narrows it to one owner
        (a customer's transactions)."""
        max_limit = PAGED_MAX_LIMIT[entity]
        limit = self._int(request, "limit", DEFAULT_LIMIT)
        page = self._int(request, "page", 1)
        assert limit is not None and page is not None
        if limit > max_limit:
            return validation_problem("limit", "InvalidLimit",
                                      f"Limit {max_limit} per page")
        if limit < 1:
            return validation_problem("limit", "InvalidLimit", "Limit must be positive")
        if page < 1:
            return validation_problem("page", "InvalidPage", "Page must be positive")
        withs = self._withs(request)
        with self._state_lock:
            items = self._scope(entity, withs)
            if where is not None:
                items = [i for i in items if str(i.get(where[0])) == where[1]]
            items = self._filter(request, entity, items)
            items = self._sort(request, entity, items)
            chunk = items[(page - 1) * limit: page * limit]
            index = (self._leads_by_contact()
                     if entity == "contacts" and "leads" in withs else None)
            rendered = [self._render(entity, item, withs, index) for item in chunk]
            has_next = len(items) > page * limit
            if entity in self.edit_between_pages:
                self._edit_after_page(entity, chunk)
        if not rendered:
            return Response(204)
        links = {"self": {"href": self._page_href(request, page)}}
        if has_next:
            links["next"] = {"href": self._page_href(request, page + 1)}
        if page > 1:
            links["prev"] = {"href": self._page_href(request, page - 1)}
        return Response(200, {"_page": page, "_links": links, "_embedded": {entity: rendered}},
                        HAL)

    def _page_href(self, request: Request, page: int) -> str:
        pairs = [(k, v) for k, v in request.query_pairs if k != "page"]
        pairs.append(("page", str(page)))
        return f"{self.base_url}{request.path}?{urlencode(pairs, safe='[],')}"

    # -- filtering ---------------------------------------------------------------------------
    def _filter(self, request: Request, entity: str, items: list[dict]) -> list[dict]:
        time_fields = ("created_at", "updated_at", "closed_at")
        out = list(items)
        for fname in time_fields:
            lo = self._int(request, f"filter[{fname}][from]", None)
            hi = self._int(request, f"filter[{fname}][to]", None)
            exact = self._int(request, f"filter[{fname}]", None)
            if exact is not None:
                lo = hi = exact
            if lo is not None:
                out = [i for i in out if i.get(fname) is not None and int(i[fname]) >= lo]
            if hi is not None:
                out = [i for i in out if i.get(fname) is not None and int(i[fname]) <= hi]
        for fname in ("id", "pipeline_id", "responsible_user_id", "created_by", "entity_id"):
            wanted = self._multi(request, fname)
            if wanted:
                out = [i for i in out if str(i.get(fname)) in wanted]
        if entity == "events":
            types = self._multi(request, "type")
            if types:
                out = [i for i in out if i.get("type") in types]
            entities = self._multi(request, "entity")
            if entities:
                out = [i for i in out if i.get("entity_type") in entities]
        return out

    @staticmethod
    def _multi(request: Request, name: str) -> set[str]:
        values: set[str] = set()
        for key, value in request.query_pairs:
            if key == f"filter[{name}]" or (
                key.startswith(f"filter[{name}][") and key[len(f"filter[{name}]["):-1].isdigit()
            ) or key == f"filter[{name}][]":
                values.update(v.strip() for v in value.split(",") if v.strip())
        return values

    def _sort(self, request: Request, entity: str, items: list[dict]) -> list[dict]:
        if entity == "events":
            return sorted(items, key=lambda e: (int(e.get("created_at") or 0), str(e.get("id"))))
        orders = [(k[len("order["):-1], v) for k, v in request.query_pairs
                  if k.startswith("order[") and k.endswith("]")]
        field, direction = orders[0] if orders else ("id", "asc")
        if field not in ("id", "created_at", "updated_at"):
            raise _BadRequest(validation_problem(f"order[{field}]", "NotSupportedChoice",
                                                 f"Sorting by {field} is not supported"))
        if direction not in ("asc", "desc"):
            raise _BadRequest(validation_problem(f"order[{field}]", "NotSupportedChoice",
                                                 "Order must be asc or desc"))
        reverse = direction == "desc"
        return sorted(items, key=lambda i: (int(i.get(field) or 0), int(i.get("id") or 0)),
                      reverse=reverse)
