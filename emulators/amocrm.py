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

Write side (activation_apis.md §1): the contacts' tag dictionary (GET/POST
``/api/v4/contacts/tags``), tags on contacts (batch PATCH ``/api/v4/contacts`` with
``tags_to_add``/``tags_to_delete``, or ``_embedded.tags``, which replaces the whole set and
wins over the lists, pitfall 1), tasks (GET/POST ``/api/v4/tasks``, PATCH
``/api/v4/tasks/{id}``) and new leads (POST ``/api/v4/leads``, then listed like the others;
``GET /api/v4/leads?query=`` searches names). Write bodies are JSON arrays of at most 250
items; one invalid item answers 400 ``validation-errors`` and nothing of the request is
applied. Every other non-GET request answers 405. ``write_requests()``, ``tasks()``,
``contact_tags()`` and ``created_leads()`` let tests see what was written.
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
               "companies", "customers", "customer_statuses", "transactions", "tasks")
PAGED_MAX_LIMIT = {"leads": 250, "contacts": 250, "companies": 250, "customers": 250,
                   "transactions": 250, "users": 250, "events": 100, "tasks": 250}
# entities with /api/v4/<entity> and /api/v4/<entity>/<id> (transactions live under customers)
TOP_LEVEL_LISTS = ("leads", "contacts", "companies", "customers", "users", "events", "tasks")
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
# write side (activation_apis.md §1)
MAX_WRITE_ITEMS = 250  # items per POST/PATCH body; the real maximum is unverified (§5)
TAG_LIMIT = 250  # GET /api/v4/contacts/tags page size maximum
TASK_ENTITY_TYPES = ("leads", "contacts", "companies", "customers")
TASK_TYPES = (1, 2)  # built in: 1 follow-up, 2 meeting; the emulator has no custom types
WON_LOST = (142, 143)  # shared by every pipeline
UNSORTED_TYPE = 1  # status type of the "incoming leads" (unsorted) stage
TASK_KEYS = frozenset({"text", "complete_till", "entity_id", "entity_type",
                       "responsible_user_id", "task_type_id", "duration", "request_id"})
TASK_PATCH_KEYS = frozenset({"is_completed", "result", "text", "complete_till",
                             "responsible_user_id", "task_type_id", "duration"})
LEAD_KEYS = frozenset({"name", "price", "pipeline_id", "status_id", "responsible_user_id",
                       "_embedded", "request_id"})
CONTACT_PATCH_KEYS = frozenset({"id", "request_id", "tags_to_add", "tags_to_delete",
                                "_embedded", "name", "first_name", "last_name",
                                "responsible_user_id"})
CONTACT_SCALARS = ("name", "first_name", "last_name", "responsible_user_id")
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


def validation_errors(failures: list[dict[str, Any]]) -> Response:
    """400 naming every failing item: ``{"request_id", "errors": [{code, path, detail}]}``."""
    return Response(400, {
        "validation-errors": failures,
        "title": "Bad Request",
        "type": "https://httpstatus.es/400",
        "status": 400,
        "detail": "Request validation failed",
    }, PROBLEM)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        copy_data: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        data = data or {}
        own = copy.deepcopy if copy_data else list
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
        # the emulator edits its records (edits between pages, created leads): a copy, unless
        # the caller hands them over (the demo: a tenth of its memory at scale 10 is the copy)
        self.data: dict[str, list[dict]] = {k: own(list(data.get(k, []))) for k in ENTITY_KEYS}
        for feed in EVENT_FEEDS:
            self.data["events"] += own(list(data.get(feed, [])))
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
        # write side: tag dictionaries per entity type, what the API created, every write call
        self._tag_dicts: dict[str, list[dict]] = {
            "contacts": self._seed_tags("contacts"), "leads": self._seed_tags("leads")}
        self._created_lead_ids: list[int] = []
        self._write_log: list[tuple[str, str, int]] = []

    # -- public helpers ----------------------------------------------------------------------
    def tasks(self) -> list[dict]:
        """Every stored task (seeded and created), as stored."""
        with self._state_lock:
            return copy.deepcopy(self.data["tasks"])

    def contact_tags(self, contact_id: int) -> list[str]:
        """The names of a contact's tags, in their order."""
        with self._state_lock:
            contact = self._find("contacts", contact_id)
            return [str(t.get("name")) for t in (contact.get("_embedded") or {}).get("tags")
                    or []]

    def created_leads(self) -> list[dict]:
        """The leads created through POST /api/v4/leads, in creation order."""
        with self._state_lock:
            return [copy.deepcopy(self._find("leads", i)) for i in self._created_lead_ids]

    def write_requests(self) -> list[tuple[str, str, int]]:
        """(method, path, number of items in the body) of every write call that was served."""
        with self._state_lock:
            return list(self._write_log)

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
        if self.rate_window.hit(request.arrived):
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
        parts = path[len("/api/v4/"):].split("/")
        try:
            if request.method not in ("GET", "HEAD"):
                return self._write(request, parts)
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
        if parts == ["contacts", "tags"]:
            return self._tags_list(request, "contacts")
        if parts == ["tasks"]:
            self._check_task_filters(request)
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
        if entity == "tasks":
            kinds = self._multi(request, "entity_type")
            if kinds:
                out = [i for i in out if i.get("entity_type") in kinds]
            types = self._multi(request, "task_type")
            if types:
                out = [i for i in out if str(i.get("task_type_id")) in types]
            done = request.get("filter[is_completed]")
            if done is not None and done != "":
                wanted = done.lower() in ("1", "true")
                out = [i for i in out if bool(i.get("is_completed")) == wanted]
        if entity == "leads":
            text = (request.get("query") or "").strip().lower()
            if text:  # full text [decided]: a case-insensitive substring of the name
                out = [i for i in out if text in str(i.get("name") or "").lower()]
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
        sortable = ("id", "created_at", "updated_at") + (
            ("complete_till",) if entity == "tasks" else ())
        if field not in sortable:
            raise _BadRequest(validation_problem(f"order[{field}]", "NotSupportedChoice",
                                                 f"Sorting by {field} is not supported"))
        if direction not in ("asc", "desc"):
            raise _BadRequest(validation_problem(f"order[{field}]", "NotSupportedChoice",
                                                 "Order must be asc or desc"))
        reverse = direction == "desc"
        return sorted(items, key=lambda i: (int(i.get(field) or 0), int(i.get("id") or 0)),
                      reverse=reverse)

    # -- write side (activation_apis.md §1) ---------------------------------------------------
    def _seed_tags(self, entity: str) -> list[dict]:
        """The tag dictionary of ``entity`` as the stored records use it (the do-not-contact
        tag of the synthetic contacts, say), one entry per tag id."""
        seen: dict[str, dict] = {}
        for item in self.data[entity]:
            for tag in (item.get("_embedded") or {}).get("tags") or []:
                if isinstance(tag, dict) and tag.get("id") is not None:
                    seen.setdefault(str(tag["id"]), {"id": tag["id"], "name": tag.get("name"),
                                                     "color": tag.get("color")})
        return sorted(seen.values(), key=lambda t: int(t["id"]))

    def _next_tag_id(self) -> int:
        """One counter for every dictionary: the same name gets different ids per entity type
        (pitfall 2)."""
        ids = [int(t["id"]) for tags in self._tag_dicts.values() for t in tags]
        return max([*ids, 90000]) + 1

    def _next_id(self, entity: str, floor: int) -> int:
        return max([floor, *(int(i["id"]) for i in self.data[entity]
                             if _is_int(i.get("id")))]) + 1

    def _tag_by_name(self, entity: str, name: str) -> dict | None:
        return next((t for t in self._tag_dicts[entity] if t.get("name") == name), None)

    def _tag_by_id(self, entity: str, tag_id: Any) -> dict | None:
        return next((t for t in self._tag_dicts[entity] if str(t.get("id")) == str(tag_id)),
                    None)

    def _new_tag(self, entity: str, name: str) -> dict:
        tag = {"id": self._next_tag_id(), "name": name, "color": None}
        self._tag_dicts[entity].append(tag)
        return tag

    def _write(self, request: Request, parts: list[str]) -> Response:
        """POST/PATCH routes; anything else stays read-only (405)."""
        method = request.method
        if method == "POST" and parts == ["contacts", "tags"]:
            handler = self._create_contact_tags
        elif method == "PATCH" and parts == ["contacts"]:
            handler = self._patch_contacts
        elif method == "POST" and parts == ["tasks"]:
            handler = self._create_tasks
        elif method == "PATCH" and len(parts) == 2 and parts[0] == "tasks":
            task_id = parts[1]

            def handler(body: Any) -> Response:
                return self._patch_task(task_id, body)
        elif method == "POST" and parts == ["leads"]:
            handler = self._create_leads
        else:
            return problem(405, "The emulator is read-only")
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            return problem(400, "The request body is not valid JSON")
        with self._state_lock:
            self._write_log.append((method, request.path,
                                    len(body) if isinstance(body, list) else 1))
            return handler(body)

    @staticmethod
    def _array(body: Any) -> list[Any]:
        """A write body: a JSON array of 1..250 items (pitfall 3: arrays even for one item)."""
        if not isinstance(body, list):
            raise _BadRequest(problem(400, "The request body must be a JSON array"))
        if not body:
            raise _BadRequest(problem(400, "The request body is an empty array"))
        if len(body) > MAX_WRITE_ITEMS:
            raise _BadRequest(problem(
                400, f"Too many entities in one request: {len(body)} > {MAX_WRITE_ITEMS}"))
        return body

    @staticmethod
    def _request_id(item: Any, index: int) -> str:
        """The item's own ``request_id`` (echoed), else its position in the body."""
        if isinstance(item, dict) and item.get("request_id") not in (None, ""):
            return str(item["request_id"])
        return str(index)

    @staticmethod
    def _unknown_keys(item: dict, allowed: frozenset[str], prefix: str = "") -> list[tuple]:
        """Fields the emulator does not model: an error, so a client typo or a round-tripped
        record (pitfall 1) fails a test instead of passing silently [decided]."""
        return [(f"{prefix}{k}", "NotSupported", f"The field {prefix}{k} is not supported")
                for k in item if k not in allowed]

    def _check_tag_refs(self, entity: str, refs: Any, path: str) -> list[tuple]:
        """``[{"name": ...} | {"id": ...}]``: names are created on use, ids must exist."""
        if not isinstance(refs, list):
            return [(path, "InvalidType", "Tags must be an array")]
        errors: list[tuple] = []
        for n, ref in enumerate(refs):
            where = f"{path}.{n}"
            if not isinstance(ref, dict):
                errors.append((where, "InvalidType", "A tag must be an object"))
            elif ref.get("id") is not None:
                if self._tag_by_id(entity, ref["id"]) is None:
                    errors.append((f"{where}.id", "NotFound", f"Tag {ref['id']} not found"))
            elif not isinstance(ref.get("name"), str) or not ref["name"].strip():
                errors.append((f"{where}.name", "NotBlank", "A tag needs a name or an id"))
        return errors

    def _resolve_tags(self, entity: str, refs: list[dict], *, create: bool) -> list[dict]:
        """Dictionary entries for checked refs; an unknown name is added when ``create``."""
        out: list[dict] = []
        for ref in refs:
            tag = (self._tag_by_id(entity, ref["id"]) if ref.get("id") is not None
                   else self._tag_by_name(entity, ref["name"]))
            if tag is None and create:
                tag = self._new_tag(entity, ref["name"])
            if tag is not None and all(t["id"] != tag["id"] for t in out):
                out.append(tag)
        return out

    @staticmethod
    def _failure(request_id: str, errors: list[tuple]) -> dict[str, Any]:
        return {"request_id": request_id,
                "errors": [{"code": c, "path": p, "detail": d} for p, c, d in errors]}

    def _collection(self, path: str, key: str, items: list[dict]) -> Response:
        return Response(200, {"_links": self._self_link(path), "_embedded": {key: items}}, HAL)

    # tags ----------------------------------------------------------------------------------
    def _tags_list(self, request: Request, entity: str) -> Response:
        """GET /api/v4/{entity}/tags: page, limit (<=250), filter[name] (exact), filter[id],
        query (substring); 204 when nothing matches."""
        limit = self._int(request, "limit", DEFAULT_LIMIT)
        page = self._int(request, "page", 1)
        assert limit is not None and page is not None
        if not 1 <= limit <= TAG_LIMIT:
            return validation_problem("limit", "InvalidLimit", f"Limit {TAG_LIMIT} per page")
        if page < 1:
            return validation_problem("page", "InvalidPage", "Page must be positive")
        with self._state_lock:
            tags = copy.deepcopy(self._tag_dicts[entity])
        name = request.get("filter[name]")
        if name:
            tags = [t for t in tags if t.get("name") == name]
        ids = self._multi(request, "id")
        if ids:
            tags = [t for t in tags if str(t.get("id")) in ids]
        text = (request.get("query") or "").strip().lower()
        if text:
            tags = [t for t in tags if text in str(t.get("name") or "").lower()]
        chunk = tags[(page - 1) * limit: page * limit]
        if not chunk:
            return Response(204)
        links = {"self": {"href": self._page_href(request, page)}}
        if len(tags) > page * limit:
            links["next"] = {"href": self._page_href(request, page + 1)}
        return Response(200, {"_page": page, "_links": links, "_embedded": {"tags": chunk}},
                        HAL)

    def _create_contact_tags(self, body: Any) -> Response:
        """POST /api/v4/contacts/tags: ``[{name, color?, request_id?}]``; an existing name is
        a 400 ``NotUnique`` [decided]; the colour is for lead tags only, so it is dropped."""
        items = self._array(body)
        failures, names = [], []
        for n, item in enumerate(items):
            rid = self._request_id(item, n)
            if not isinstance(item, dict):
                failures.append(self._failure(rid, [("", "InvalidType", "Not an object")]))
                continue
            errors = self._unknown_keys(item, frozenset({"name", "color", "request_id"}))
            name = item.get("name")
            if not isinstance(name, str) or not name.strip():
                errors.append(("name", "NotBlank", "The tag name is required"))
            elif self._tag_by_name("contacts", name) is not None or name in names:
                errors.append(("name", "NotUnique", f"Tag '{name}' already exists"))
            names.append(name)
            if errors:
                failures.append(self._failure(rid, errors))
        if failures:
            return validation_errors(failures)
        created = []
        for n, item in enumerate(items):
            tag = self._new_tag("contacts", item["name"])
            created.append({"id": tag["id"], "name": tag["name"],
                            "request_id": self._request_id(item, n)})
        return Response(200, {"_total_items": len(created),
                              "_links": self._self_link("/api/v4/contacts/tags"),
                              "_embedded": {"tags": created}}, HAL)

    def _patch_contacts(self, body: Any) -> Response:
        """Batch PATCH /api/v4/contacts. ``tags_to_add`` adds (unknown names join the
        dictionary), ``tags_to_delete`` removes only those (absent: no-op); ``_embedded.tags``
        replaces the whole set and the two lists are then ignored (pitfall 1). An unknown
        contact fails the whole request, nothing applied [decided]; ``updated_at`` moves."""
        items = self._array(body)
        failures, plans = [], []
        for n, item in enumerate(items):
            rid = self._request_id(item, n)
            if not isinstance(item, dict):
                failures.append(self._failure(rid, [("", "InvalidType", "Not an object")]))
                continue
            errors = self._unknown_keys(item, CONTACT_PATCH_KEYS)
            contact = None
            if not _is_int(item.get("id")):
                errors.append(("id", "NotBlank", "The contact id is required"))
            else:
                contact = next((c for c in self.data["contacts"]
                                if str(c.get("id")) == str(item["id"])), None)
                if contact is None:
                    errors.append(("id", "NotFound", f"Contact {item['id']} not found"))
            for key in ("tags_to_add", "tags_to_delete"):
                if key in item:
                    errors += self._check_tag_refs("contacts", item[key], key)
            emb = item.get("_embedded")
            if emb is not None:
                if not isinstance(emb, dict):
                    errors.append(("_embedded", "InvalidType", "_embedded must be an object"))
                else:
                    errors += self._unknown_keys(emb, frozenset({"tags"}), "_embedded.")
                    if emb.get("tags") is not None:
                        errors += self._check_tag_refs("contacts", emb["tags"],
                                                       "_embedded.tags")
            if "responsible_user_id" in item and not self._user_exists(
                    item["responsible_user_id"]):
                errors.append(("responsible_user_id", "NotSupportedChoice",
                               f"User {item['responsible_user_id']} is not in the account"))
            if errors:
                failures.append(self._failure(rid, errors))
            else:
                plans.append((contact, item, rid))
        if failures:
            return validation_errors(failures)
        answered = []
        for contact, item, rid in plans:
            emb = dict(contact.get("_embedded") or {})
            current = [t for t in emb.get("tags") or [] if isinstance(t, dict)]
            sent = item.get("_embedded")
            if isinstance(sent, dict) and "tags" in sent:
                tags = self._resolve_tags("contacts", sent["tags"] or [], create=True)
            else:
                tags = list(current)
                for tag in self._resolve_tags("contacts", item.get("tags_to_add") or [],
                                              create=True):
                    if all(str(t.get("id")) != str(tag["id"]) for t in tags):
                        tags.append(tag)
                for ref in item.get("tags_to_delete") or []:
                    if ref.get("id") is not None:
                        tags = [t for t in tags if str(t.get("id")) != str(ref["id"])]
                    else:
                        tags = [t for t in tags if t.get("name") != ref["name"]]
            emb["tags"] = [{"id": t["id"], "name": t.get("name"), "color": t.get("color")}
                           for t in tags]
            contact["_embedded"] = emb
            self._touch(contact, {k: item[k] for k in CONTACT_SCALARS if k in item})
            answered.append({"id": contact["id"], "updated_at": contact["updated_at"],
                             "request_id": rid,
                             "_links": self._self_link(f"/api/v4/contacts/{contact['id']}")})
        return self._collection("/api/v4/contacts", "contacts", answered)

    # tasks ---------------------------------------------------------------------------------
    def _user_exists(self, user_id: Any) -> bool:
        return _is_int(user_id) and any(u.get("id") == user_id for u in self.data["users"])

    def _default_user(self) -> int:
        """The token's user (the account's first user), as amoCRM fills a missing one."""
        return int(self.data["users"][0]["id"]) if self.data["users"] else 0

    def _entity_exists(self, entity_type: str, entity_id: Any) -> bool:
        if not _is_int(entity_id):
            return False
        return any(str(i.get("id")) == str(entity_id) and not i.get("is_deleted")
                   for i in self.data[entity_type])

    def _check_task_filters(self, request: Request) -> None:
        """``filter[entity_id]`` needs ``filter[entity_type]`` (pitfall 4)."""
        kinds = self._multi(request, "entity_type")
        if self._multi(request, "entity_id") and not kinds:
            raise _BadRequest(validation_problem(
                "filter[entity_type]", "NotBlank",
                "filter[entity_type] is required with filter[entity_id]"))
        bad = sorted(kinds - set(TASK_ENTITY_TYPES))
        if bad:
            raise _BadRequest(validation_problem(
                "filter[entity_type]", "NotSupportedChoice",
                f"Entity type {bad[0]} is not one of {', '.join(TASK_ENTITY_TYPES)}"))
        done = request.get("filter[is_completed]")
        if done not in (None, "", "0", "1", "true", "false"):
            raise _BadRequest(validation_problem("filter[is_completed]", "InvalidType",
                                                 "filter[is_completed] must be 0 or 1"))

    def _task_errors(self, item: dict) -> list[tuple]:
        errors = self._unknown_keys(item, TASK_KEYS)
        if not isinstance(item.get("text"), str) or not item["text"].strip():
            errors.append(("text", "NotBlank", "The task text is required"))
        if "complete_till" not in item:
            errors.append(("complete_till", "NotBlank", "complete_till is required"))
        elif not _is_int(item["complete_till"]):
            errors.append(("complete_till", "InvalidType",
                           "complete_till must be Unix seconds (an integer)"))
        kind, target = item.get("entity_type"), item.get("entity_id")
        if kind is not None or target is not None:
            if kind not in TASK_ENTITY_TYPES:
                errors.append(("entity_type", "NotSupportedChoice",
                               f"entity_type must be one of {', '.join(TASK_ENTITY_TYPES)}"))
            elif not self._entity_exists(kind, target):
                errors.append(("entity_id", "NotFound", f"{kind} {target} not found"))
        if "responsible_user_id" in item and not self._user_exists(item["responsible_user_id"]):
            errors.append(("responsible_user_id", "NotSupportedChoice",
                           f"User {item['responsible_user_id']} is not in the account"))
        if "task_type_id" in item and item["task_type_id"] not in TASK_TYPES:
            errors.append(("task_type_id", "NotSupportedChoice",
                           f"Task type {item['task_type_id']} does not exist"))
        if "duration" in item and not (_is_int(item["duration"]) and item["duration"] >= 0):
            errors.append(("duration", "InvalidType", "duration must be seconds (>= 0)"))
        return errors

    def _create_tasks(self, body: Any) -> Response:
        """POST /api/v4/tasks: ``text`` and ``complete_till`` required; the entity and the
        responsible user must exist; ``task_type_id`` 1 by default."""
        items = self._array(body)
        failures = []
        for n, item in enumerate(items):
            errors = (self._task_errors(item) if isinstance(item, dict)
                      else [("", "InvalidType", "Not an object")])
            if errors:
                failures.append(self._failure(self._request_id(item, n), errors))
        if failures:
            return validation_errors(failures)
        now = int(time.time())
        answered = []
        for n, item in enumerate(items):
            task = {
                "id": self._next_id("tasks", 4_700_000),
                "created_by": 0, "updated_by": 0, "created_at": now, "updated_at": now,
                "responsible_user_id": item.get("responsible_user_id", self._default_user()),
                "group_id": 0,
                "entity_id": item.get("entity_id"), "entity_type": item.get("entity_type"),
                "duration": item.get("duration", 0), "is_completed": False,
                "task_type_id": item.get("task_type_id", 1), "text": item["text"],
                "result": [], "complete_till": item["complete_till"],
                "account_id": self.account_id,
            }
            self.data["tasks"].append(task)
            answered.append({"id": task["id"], "request_id": self._request_id(item, n),
                             "_links": self._self_link(f"/api/v4/tasks/{task['id']}")})
        return self._collection("/api/v4/tasks", "tasks", answered)

    def _patch_task(self, task_id: str, body: Any) -> Response:
        """PATCH /api/v4/tasks/{id} (an object): a manager completes the task, with a result
        text; the answer holds only ``id`` and ``updated_at``."""
        try:
            task = self._find("tasks", task_id)
        except KeyError:
            return problem(404, f"Task {task_id} not found")
        if not isinstance(body, dict):
            return problem(400, "The request body must be a JSON object")
        errors = self._unknown_keys(body, TASK_PATCH_KEYS)
        if "is_completed" in body and not isinstance(body["is_completed"], bool):
            errors.append(("is_completed", "InvalidType", "is_completed must be a boolean"))
        result = body.get("result")
        if result is not None and not (isinstance(result, dict)
                                       and isinstance(result.get("text", ""), str)):
            errors.append(("result", "InvalidType", "result must be {\"text\": ...}"))
        if "complete_till" in body and not _is_int(body["complete_till"]):
            errors.append(("complete_till", "InvalidType", "complete_till must be an integer"))
        if "responsible_user_id" in body and not self._user_exists(body["responsible_user_id"]):
            errors.append(("responsible_user_id", "NotSupportedChoice",
                           f"User {body['responsible_user_id']} is not in the account"))
        if errors:
            return validation_errors([self._failure("0", errors)])
        changes = {k: v for k, v in body.items() if k != "result"}
        if result is not None:
            changes["result"] = {"text": result.get("text", "")}
        self._touch(task, changes)
        return Response(200, {"id": task["id"], "updated_at": task["updated_at"],
                              "_links": self._self_link(f"/api/v4/tasks/{task['id']}")}, HAL)

    # leads ---------------------------------------------------------------------------------
    def _main_pipeline(self) -> dict | None:
        pipelines = self.data["pipelines"]
        return next((p for p in pipelines if p.get("is_main")), pipelines[0] if pipelines
                    else None)

    @staticmethod
    def _statuses(pipeline: dict) -> list[dict]:
        return list((pipeline.get("_embedded") or {}).get("statuses") or [])

    def _first_stage(self, pipeline: dict) -> int | None:
        """The first stage after "incoming leads" (unsorted), as amoCRM places a new lead."""
        stages = sorted((s for s in self._statuses(pipeline)
                         if s.get("type") != UNSORTED_TYPE and s.get("id") not in WON_LOST),
                        key=lambda s: (int(s.get("sort") or 0), int(s.get("id") or 0)))
        return stages[0]["id"] if stages else None

    def _lead_stage(self, item: dict, errors: list[tuple]) -> tuple[Any, Any]:
        """(pipeline_id, status_id) of a new lead; problems go to ``errors``."""
        pipeline_id, status_id = item.get("pipeline_id"), item.get("status_id")
        pipeline = None
        if pipeline_id is not None:
            pipeline = next((p for p in self.data["pipelines"]
                             if _is_int(pipeline_id) and p.get("id") == pipeline_id), None)
            if pipeline is None:
                errors.append(("pipeline_id", "NotFound", f"Pipeline {pipeline_id} not found"))
                return None, None
        elif status_id is not None and status_id not in WON_LOST:
            pipeline = next((p for p in self.data["pipelines"] if any(
                s.get("id") == status_id for s in self._statuses(p))), None)
        pipeline = pipeline or self._main_pipeline()
        if pipeline is None:
            errors.append(("pipeline_id", "NotFound", "The account has no pipeline"))
            return None, None
        if status_id is None:
            status_id = self._first_stage(pipeline)
        elif status_id not in WON_LOST and not any(
                _is_int(status_id) and s.get("id") == status_id
                for s in self._statuses(pipeline)):
            errors.append(("status_id", "NotSupportedChoice",
                           f"Status {status_id} is not in pipeline {pipeline['id']}"))
        return pipeline["id"], status_id

    def _lead_errors(self, item: dict) -> tuple[list[tuple], tuple[Any, Any]]:
        errors = self._unknown_keys(item, LEAD_KEYS)
        if "name" in item and not isinstance(item["name"], str):
            errors.append(("name", "InvalidType", "name must be a string"))
        if "price" in item and not (_is_int(item["price"]) and item["price"] >= 0):
            errors.append(("price", "InvalidType", "price must be a non-negative integer"))
        if "responsible_user_id" in item and not self._user_exists(item["responsible_user_id"]):
            errors.append(("responsible_user_id", "NotSupportedChoice",
                           f"User {item['responsible_user_id']} is not in the account"))
        stage = self._lead_stage(item, errors)
        emb = item.get("_embedded")
        if emb is not None:
            if not isinstance(emb, dict):
                errors.append(("_embedded", "InvalidType", "_embedded must be an object"))
                return errors, stage
            errors += self._unknown_keys(emb, frozenset({"contacts", "tags"}), "_embedded.")
            refs = emb.get("contacts") or []
            if not isinstance(refs, list):
                errors.append(("_embedded.contacts", "InvalidType", "Must be an array"))
                refs = []
            for n, ref in enumerate(refs):
                if not isinstance(ref, dict) or not self._entity_exists("contacts",
                                                                        ref.get("id")):
                    cid = ref.get("id") if isinstance(ref, dict) else ref
                    errors.append((f"_embedded.contacts.{n}.id", "NotFound",
                                   f"Contact {cid} not found"))
            if emb.get("tags") is not None:
                errors += self._check_tag_refs("leads", emb["tags"], "_embedded.tags")
        return errors, stage

    def _create_leads(self, body: Any) -> Response:
        """POST /api/v4/leads linking existing contacts (§1.d); the stage defaults to the
        first non-unsorted stage of the main pipeline; the lead is then listed like any."""
        items = self._array(body)
        failures, stages = [], []
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                failures.append(self._failure(self._request_id(item, n),
                                              [("", "InvalidType", "Not an object")]))
                continue
            errors, stage = self._lead_errors(item)
            stages.append(stage)
            if errors:
                failures.append(self._failure(self._request_id(item, n), errors))
        if failures:
            return validation_errors(failures)
        now = int(time.time())
        answered = []
        for n, (item, (pipeline_id, status_id)) in enumerate(zip(items, stages, strict=True)):
            lead_id = self._next_id("leads", 30_000_000)
            emb = item.get("_embedded") or {}
            contacts = [{"id": ref["id"], "is_main": bool(ref.get("is_main", False))}
                        for ref in emb.get("contacts") or []]
            tags = self._resolve_tags("leads", emb.get("tags") or [], create=True)
            lead = {
                "id": lead_id, "name": item.get("name") or f"Сделка #{lead_id}",
                "price": item.get("price", 0),
                "responsible_user_id": item.get("responsible_user_id", self._default_user()),
                "group_id": 0, "status_id": status_id, "pipeline_id": pipeline_id,
                "loss_reason_id": None, "created_by": 0, "updated_by": 0,
                "created_at": now, "updated_at": now,
                "closed_at": now if status_id in WON_LOST else None,
                "closest_task_at": None, "is_deleted": False, "score": None,
                "account_id": self.account_id, "labor_cost": None,
                "custom_fields_values": None,
                "_embedded": {"tags": [dict(t) for t in tags], "companies": [],
                              "contacts": contacts},
            }
            self.data["leads"].append(lead)
            self._created_lead_ids.append(lead_id)
            answered.append({"id": lead_id, "request_id": self._request_id(item, n),
                             "_links": self._self_link(f"/api/v4/leads/{lead_id}")})
        return self._collection("/api/v4/leads", "leads", answered)
