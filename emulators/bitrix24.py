"""Local emulator of the Bitrix24 REST API (CRM subset) that voronka extracts.

Faithful to the reference notes (crm_apis.md §2):

- incoming-webhook calls ``/rest/{user_id}/{code}/{method}[.json]`` and OAuth calls
  ``/rest/{method}`` with ``auth=<token>`` (query, form or JSON body) or ``Bearer``; a wrong
  webhook or token is 401 ``NO_AUTH_FOUND``, an expired access token 401 ``expired_token``;
- the OAuth server ``/oauth/token/`` (``grant_type=refresh_token``): every renewal returns a new
  refresh token and spends the old one; a spent/unknown one is 400 ``invalid_grant``, wrong
  client credentials 401 ``invalid_client`` (the HTTP statuses are [inference]: the notes give
  only the codes);
- ``crm.lead.list``, ``crm.deal.list``, ``crm.contact.list`` (``filter`` with ``>``/``>=``/
  ``<``/``<=``/``=``/``!``/``@`` prefixes, ``order``, ``select``: ``*``/empty = every standard
  field, ``UF_*`` = the custom fields, multifields ``PHONE``/``EMAIL``/``WEB``/``IM`` only when
  named), ``crm.status.list``, ``crm.category.list`` (``entityTypeId=2``), the legacy
  ``crm.dealcategory.list`` / ``crm.dealcategory.stage.list``, ``crm.stagehistory.list``
  (``result.items``, native integers) and ``user.get``;
- the legacy list methods return every scalar as a **string** (``"ID": "37"``,
  ``"OPPORTUNITY": "45000.00"``); dates are ISO 8601 with the portal's offset;
- fixed 50 rows per page with ``total`` and ``next``; ``start=-1`` skips counting (``total`` 0,
  no ``next``);
- ``batch`` (``halt``, ``cmd``, ``$result[key][...]`` references, ``result_error`` per command,
  more than 50 commands → 400 ``ERROR_BATCH_LENGTH_EXCEEDED``, nested batch refused). [inference,
  as in the notes] a reference that cannot be resolved (a short page has no row 49) fails that
  command with ``INVALID_ARG_VALUE``;
- the leaky bucket (``bucket_size`` burst, ``drain_per_s`` drain, per portal) → HTTP 503
  ``QUERY_LIMIT_EXCEEDED``; the optional per-method operating-time budget
  (``operating_limit_s`` over ten one-minute buckets) → HTTP 429 ``OPERATION_TIME_LIMIT`` with
  ``time.operating_reset_at``; the ``time`` block on every answer with a result (and on
  the 429). Other error bodies are the documented ``{error, error_description}`` only.
- fault switch ``edit_between_pages`` (entities): after each list page one row of it is edited
  (``DATE_MODIFY`` bumped); ``page_edits`` lists them (issue 12 item 1).
- the write side (activation_apis.md §2, issue 15): ``crm.contact.userfield.list``/``.add``
  (``UF_CRM_`` prefix, <= 50 chars, ``A-Z0-9_``), ``crm.contact.get``/``.update`` (user-field
  values checked against their definitions; a boolean is stored ``"1"``/``"0"`` [decided]),
  ``crm.activity.todo.add``/``crm.activity.list``/``crm.activity.update`` and
  ``crm.deal.add`` (stage must belong to the category; a stage-history row is written). Writes
  count in the same leaky bucket (a batch is one request). The fault
  ``faults.add("drop", path_prefix=..., after_write=True)`` applies the call, then drops the
  connection (the client never learns the outcome). Inspection: ``todos()``,
  ``contact_field()``, ``created_deals()``, ``write_requests()``.

Each call is charged a simulated ``operating_cost_s`` of execution time (real calls here take
microseconds). The operating budget reads ``self.clock`` so tests can move time forward.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from ._base import EmulatorServer, Fault, Request, Response

ENTITY_KEYS = ("leads", "deals", "contacts", "statuses", "categories", "stagehistory", "users")
PAGE_SIZE = 50
MAX_BATCH = 50
MULTIFIELDS = ("PHONE", "EMAIL", "WEB", "IM")
PORTAL_TZ = dt.timezone(dt.timedelta(hours=3))  # server time zone of the emulated portal
REFRESH_TOKEN_TTL_S = 180 * 86400
OPERATING_BUCKETS = 10  # ten one-minute buckets

_LIST_METHODS = {"crm.lead.list": "leads", "crm.deal.list": "deals",
                 "crm.contact.list": "contacts"}
_STAGEHISTORY_FILTER_FIELDS = frozenset({"ID", "TYPE_ID", "OWNER_ID", "CREATED_TIME",
                                         "CATEGORY_ID", "STAGE_ID", "STAGE_SEMANTIC_ID",
                                         "STATUS_ID", "STATUS_SEMANTIC_ID"})
_REF = re.compile(r"\$result\[([^\]]+)\]((?:\[[^\]]*\])*)")
# the methods that change the portal (logged by write_requests(); after_write drops apply)
WRITE_METHODS = frozenset({"crm.contact.userfield.add", "crm.contact.update",
                           "crm.activity.todo.add", "crm.activity.update", "crm.deal.add"})
# crm.contact.userfield.add USER_TYPE_ID values (activation_apis.md §2.b)
UF_TYPES = frozenset({"string", "integer", "double", "boolean", "datetime", "date", "money",
                      "url", "address", "enumeration", "file", "employee", "crm_status",
                      "iblock_section", "iblock_element", "crm"})
UF_PREFIX = "UF_CRM_"
UF_MAX_LEN = 50
OWNER_TYPES = {1: "leads", 2: "deals", 3: "contacts"}  # 4 (company) exists but has no rows here
_READ_ONLY_CONTACT_FIELDS = frozenset({"ID", "DATE_CREATE", "DATE_MODIFY", "CREATED_BY_ID",
                                       "MODIFY_BY_ID"})
_TRUE = frozenset({"1", "y", "true"})
_FALSE = frozenset({"0", "n", "false"})


class _Error(Exception):
    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.code, "error_description": self.description}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def php_params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """PHP-style nested parameters: ``filter[>ID]=5&select[]=ID`` → ``{"filter": {">ID": "5"},
    "select": ["ID"]}``. Dicts whose keys are all digits become lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        parts = [head] + (re.findall(r"\[([^\]]*)\]", "[" + rest) if rest else [])
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if part == "":
                    node.append(value if last else {})
                    node = node[-1]
                    continue
                node = dict(enumerate(node))  # pragma: no cover - mixed forms are rare
            if part == "" and not last:  # pragma: no cover
                part = str(len(node))
            if last:
                if part == "":  # pragma: no cover - handled in the list branch
                    node.setdefault("", []).append(value)
                else:
                    node[part] = value
            else:
                nxt = parts[i + 1]
                if part not in node or not isinstance(node[part], dict | list):
                    node[part] = [] if nxt == "" else {}
                node = node[part]
    return _listify(root)


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _listify(v) for k, v in value.items()}
        if out and all(k.isdigit() for k in out):
            return [out[k] for k in sorted(out, key=int)]
        return out
    if isinstance(value, list):
        return [_listify(v) for v in value]
    return value


def stringify(value: Any) -> Any:
    """Legacy ``crm.*.list`` typing: every scalar a string, null stays null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, float | Decimal):
        return f"{value:.2f}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return {k: stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [stringify(v) for v in value]
    return str(value)


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, PORTAL_TZ).isoformat(timespec="seconds")


def parse_datetime(value: Any) -> dt.datetime | None:
    """ISO 8601 with offset, ``YYYY-MM-DD HH:MM:SS`` or ``YYYY-MM-DD`` (portal time zone)."""
    if value in (None, ""):
        return None
    text = str(value).strip().replace(" ", "T", 1)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=PORTAL_TZ)


def _compare_key(field: str, value: Any) -> Any:
    if value is None:
        return None
    if field.startswith("DATE_") or field.endswith(("_TIME", "_DATE")) or field in (
            "BEGINDATE", "CLOSEDATE"):
        parsed = parse_datetime(value)
        if parsed is not None:
            return parsed
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return str(value)


def _match(row: dict, filters: dict[str, Any]) -> bool:
    for raw_key, wanted in filters.items():
        m = re.match(r"^(>=|<=|!=|>|<|=|!|@|%)?(.+)$", raw_key)
        assert m is not None
        op, field = m.group(1) or "=", m.group(2)
        have = row.get(field)
        if op == "@" or isinstance(wanted, list):
            values = {str(v) for v in (wanted if isinstance(wanted, list) else [wanted])}
            if (str(have) in values) == (op in ("!", "!=")):
                return False
            continue
        if op == "%":
            if str(wanted).lower() not in str(have or "").lower():
                return False
            continue
        a, b = _compare_key(field, have), _compare_key(field, wanted)
        if op in ("=", "!", "!="):
            equal = a == b if type(a) is type(b) else str(have) == str(wanted)
            if equal == (op == "="):
                continue
            return False
        if a is None or b is None or type(a) is not type(b):
            return False
        ok = {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]
        if not ok:
            return False
    return True


def _sort(rows: list[dict], order: Any) -> list[dict]:
    keys = list(order.items()) if isinstance(order, dict) and order else [("ID", "ASC")]
    out = list(rows)
    for field, direction in reversed(keys):
        reverse = str(direction).upper() == "DESC"

        def key(row: dict, field: str = field) -> tuple:
            v = _compare_key(field, row.get(field))
            return (v is None, v if v is not None else 0)

        try:
            out.sort(key=key, reverse=reverse)
        except TypeError:
            out.sort(key=lambda r, f=field: str(r.get(f)), reverse=reverse)
    return out


def _start(params: dict[str, Any]) -> int:
    try:
        return int(params.get("start", 0) or 0)
    except (TypeError, ValueError):
        return 0


def _page(rows: list[dict], params: dict[str, Any]) -> tuple[list[dict], int, int | None]:
    """(page rows, total, next) per the list-method rules."""
    start = _start(params)
    if start < 0:  # no counting: first 50 rows, total 0, no next
        return rows[:PAGE_SIZE], 0, None
    chunk = rows[start:start + PAGE_SIZE]
    nxt = start + PAGE_SIZE if len(rows) > start + PAGE_SIZE else None
    return chunk, len(rows), nxt


# --------------------------------------------------------------------------------------------
# the emulator
# --------------------------------------------------------------------------------------------
class Bitrix24Emulator(EmulatorServer):
    """Bitrix24 REST emulator; see the module docstring."""

    def __init__(
        self,
        data: dict[str, list[dict]] | None = None,
        *,
        portal: str = "voronka.bitrix24.ru",
        webhook_user_id: int = 1,
        webhook_code: str = "demo-webhook-code",
        client_id: str = "local.demo",
        client_secret: str = "demo-b24-secret",
        refresh_token: str = "demo-b24-refresh-0",
        access_token_ttl_s: int = 3600,
        bucket_size: int = 50,
        drain_per_s: float = 2.0,
        operating_limit_s: float | None = None,
        operating_cost_s: float = 0.05,
        edit_between_pages: tuple[str, ...] = (),
        contact_userfields: tuple[dict[str, Any], ...] = (),
        copy_data: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        data = data or {}
        unknown = set(data) - set(ENTITY_KEYS)
        if unknown:
            raise ValueError(f"unknown Bitrix24 entities in data: {sorted(unknown)}")
        # a copy, since the emulator edits its records, unless the caller hands them over
        own = copy.deepcopy if copy_data else list
        self.data: dict[str, list[dict]] = {k: own(list(data.get(k, []))) for k in ENTITY_KEYS}
        # the edits-between-pages fault (issue 12 item 1): after serving a page of one of
        # these entities, its first row not edited before gets a new DATE_MODIFY
        self.edit_between_pages = set(edit_between_pages)
        self.page_edits: list[tuple[str, Any]] = []
        self.portal = portal
        self.webhook_user_id = int(webhook_user_id)
        self.webhook_code = webhook_code
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token_ttl_s = access_token_ttl_s
        self.bucket_size = bucket_size
        self.drain_per_s = drain_per_s
        self.operating_limit_s = operating_limit_s
        self.operating_cost_s = operating_cost_s
        self.clock: Callable[[], float] = time.time  # operating budget and token expiry
        self.member_id = secrets.token_hex(16)
        self._state_lock = threading.RLock()
        self._bucket_level = 0.0
        self._bucket_t = time.monotonic()
        # method -> {minute: seconds}
        self._operating: dict[str, dict[int, float]] = {}
        self._refresh_tokens: dict[str, dict[str, Any]] = {
            refresh_token: {"state": "active", "issued_at": time.time()}}
        self._access_tokens: dict[str, float] = {}
        self.token_refreshes = 0
        # method -> [(code, description, remaining)]: sub-call faults (work inside batch too)
        self._method_faults: dict[str, list[list[Any]]] = {}
        # the write side: contact user-field definitions (every UF_* key the contacts already
        # carry is a "string" field unless ``contact_userfields`` defines it), to-dos, created
        # deals and the log of write requests
        self._userfields: list[dict[str, Any]] = []
        for definition in contact_userfields:
            self._add_userfield(dict(definition))
        known = {f["FIELD_NAME"] for f in self._userfields}
        for name in sorted({k for row in self.data["contacts"] for k in row
                            if k.startswith("UF_") and k not in known}):
            self._add_userfield({"FIELD_NAME": name, "USER_TYPE_ID": "string"})
        self._activities: list[dict[str, Any]] = []
        self._created_deal_ids: list[int] = []
        self._writes: list[tuple[str, int]] = []
        self._modified_high: dict[str, float] = {}

    # -- public helpers ----------------------------------------------------------------------
    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/rest/{self.webhook_user_id}/{self.webhook_code}/"

    @property
    def current_refresh_token(self) -> str | None:
        with self._state_lock:
            active = [t for t, v in self._refresh_tokens.items() if v["state"] == "active"]
        return active[-1] if active else None

    def expire_access_tokens(self) -> None:
        with self._state_lock:
            for token in self._access_tokens:
                self._access_tokens[token] = 0.0

    def reset_limits(self) -> None:
        with self._state_lock:
            self._bucket_level = 0.0
            self._operating.clear()

    def fail_method(self, method: str, code: str = "INVALID_ARG_VALUE",
                    description: str = "Injected error", *, count: int = 1,
                    status: int = 400) -> None:
        """The next ``count`` calls of ``method`` fail with ``{error: code}``: as the HTTP
        answer when called directly, as ``result_error[key]`` inside a batch."""
        with self._state_lock:
            self._method_faults.setdefault(method.lower(), []).append(
                [status, code, description, count])

    def update(self, entity: str, item_id: Any, **changes: Any) -> dict:
        """Change a lead/deal/contact and bump ``DATE_MODIFY`` (strictly increasing)."""
        with self._state_lock:
            row = next((r for r in self.data[entity] if str(r.get("ID")) == str(item_id)), None)
            if row is None:
                raise KeyError(f"{entity} {item_id} not found")
            new_modify = changes.pop("DATE_MODIFY", None)
            row.update(changes)
            if new_modify is None:
                old = parse_datetime(row.get("DATE_MODIFY"))
                ts = max(time.time(), old.timestamp() + 1 if old else 0.0)
                new_modify = iso(ts)
            row["DATE_MODIFY"] = new_modify
            return copy.deepcopy(row)

    def _edit_after_page(self, entity: str, chunk: list[dict]) -> None:
        """The ``edit_between_pages`` fault: a user edits a row the client has just read."""
        done = {i for e, i in self.page_edits if e == entity}
        row = next((r for r in chunk if r.get("ID") not in done), None)
        if row is not None:
            self.update(entity, row["ID"])
            self.page_edits.append((entity, row["ID"]))

    # -- inspection (tests) ------------------------------------------------------------------
    def todos(self) -> list[dict]:
        """Every to-do (``crm.activity.todo.add``), native values, in creation order."""
        with self._state_lock:
            return copy.deepcopy(self._activities)

    def contact_field(self, contact_id: Any, field_name: str) -> Any:
        """The stored value of one contact field (None when unset); KeyError for no contact."""
        with self._state_lock:
            row = self._row("contacts", contact_id)
            if row is None:
                raise KeyError(f"contact {contact_id} not found")
            return copy.deepcopy(row.get(field_name))

    def created_deals(self) -> list[dict]:
        """The deals ``crm.deal.add`` created, in creation order."""
        with self._state_lock:
            return [copy.deepcopy(r) for i in self._created_deal_ids
                    if (r := self._row("deals", i)) is not None]

    def write_requests(self) -> list[tuple[str, int]]:
        """``(method, n_commands)`` per HTTP request that carried a write: a direct write call
        is ``(method, 1)``; a batch holding any write is ``("batch", len(cmd))``."""
        with self._state_lock:
            return list(self._writes)

    def complete_todo(self, activity_id: Any) -> None:
        """A manager ticks the to-do off (as ``crm.activity.update`` ``COMPLETED=Y``)."""
        with self._state_lock:
            row = self._activity(activity_id)
            row["COMPLETED"] = "Y"
            row["STATUS"] = 2
            row["LAST_UPDATED"] = iso(time.time())

    # -- faults ------------------------------------------------------------------------------
    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            reset = self.clock() + float(fault.params.get("retry_after", 1))
            body = _Error(429, "OPERATION_TIME_LIMIT",
                          "Method is blocked due to operation time limit.").body()
            body["time"] = self._time_block(time.time(), 0.0, operating=0.0, reset_at=reset)
            return Response(429, body)
        if fault.kind == "5xx":
            status = int(fault.params.get("status", 500))
            if status == 503:
                return Response(503, _Error(503, "QUERY_LIMIT_EXCEEDED",
                                            "Too many requests").body())
            if status == 500:
                return Response(500, _Error(500, "INTERNAL_SERVER_ERROR",
                                            "Internal server error").body())
            title = f"{status} Server Error"
            return Response(status, f"<html><head><title>{title}</title></head><body><h1>"
                                    f"{title}</h1></body></html>", "text/html")
        if fault.kind == "expired_token":
            return Response(401, _Error(401, "expired_token",
                                        "The access token provided has expired.").body())
        raise AssertionError(fault.kind)  # pragma: no cover

    # -- dispatch ----------------------------------------------------------------------------
    def _dispatch(self, request: Request, entry: dict[str, Any]) -> Response | None:
        entry["api_method"] = self._method_of(request.path)
        entry["error"] = None
        try:  # the call's parameters (JSON/form body or query), without the token
            params = self._params(request)
            params.pop("auth", None)
            entry["params"] = params
        except (ValueError, UnicodeDecodeError):
            entry["params"] = None
        response = super()._dispatch(request, entry)
        if response is not None and response.status >= 400 and response.body:
            try:
                entry["error"] = json.loads(response.body).get("error")
            except (ValueError, AttributeError):
                entry["error"] = None
        return response

    @staticmethod
    def _method_of(path: str) -> str | None:
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] != "rest":
            return None
        method = parts[-1].lower()
        return method[:-5] if method.endswith(".json") else method

    def handle(self, request: Request) -> Response:
        path = request.path
        if path.rstrip("/") == "/oauth/token":
            return self._oauth(request)
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] != "rest" or len(parts) not in (2, 4):
            return Response(404, _Error(404, "ERROR_METHOD_NOT_FOUND",
                                        "Method not found!").body())
        try:
            params = self._params(request)
        except ValueError:
            return Response(400, _Error(400, "INVALID_REQUEST", "Malformed body").body())
        method = self._method_of(path) or ""
        t0 = time.time()
        try:
            if len(parts) == 4:
                if parts[1] != str(self.webhook_user_id) or parts[2] != self.webhook_code:
                    raise _Error(401, "NO_AUTH_FOUND", "Wrong authorization data")
            else:
                self._check_token(request, params)
            if not self._bucket_take():
                raise _Error(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
            self._log_write(method, params)
            body = self._batch(params) if method == "batch" else self._call(method, params)
        except _Error as exc:
            err = exc.body()
            if exc.code == "OPERATION_TIME_LIMIT":
                err["time"] = self._time_block(t0, 0.0, method)
            return Response(exc.status, err)
        body["time"] = self._time_block(t0, 0.0 if method == "batch" else self.operating_cost_s,
                                        None if method == "batch" else method)
        return Response(200, body)

    @staticmethod
    def _params(request: Request) -> dict[str, Any]:
        pairs = list(request.query_pairs)
        ctype = (request.header("Content-Type") or "").lower()
        body: Any = None
        if request.body:
            if "json" in ctype:
                body = request.json()
            else:
                pairs += parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        params = php_params(pairs)
        if isinstance(body, dict):
            params.update(body)
        elif body is not None:
            raise ValueError("body must be a JSON object")
        return params

    # -- auth --------------------------------------------------------------------------------
    def _check_token(self, request: Request, params: dict[str, Any]) -> None:
        token = params.pop("auth", None)
        if not token:
            scheme, _, value = (request.header("Authorization") or "").partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
        if not token:
            raise _Error(401, "NO_AUTH_FOUND", "Wrong authorization data")
        with self._state_lock:
            expires_at = self._access_tokens.get(str(token))
        if expires_at is None:
            raise _Error(401, "NO_AUTH_FOUND", "Wrong authorization data")
        if self.clock() >= expires_at:
            raise _Error(401, "expired_token", "The access token provided has expired.")

    def _oauth(self, request: Request) -> Response:
        try:
            params = self._params(request)
        except ValueError:
            return Response(400, _Error(400, "invalid_request", "Malformed body").body())
        if params.get("grant_type") != "refresh_token":
            return Response(400, _Error(400, "invalid_request",
                                        "Unsupported grant_type").body())
        if (params.get("client_id") != self.client_id
                or params.get("client_secret") != self.client_secret):
            return Response(401, _Error(401, "invalid_client", "Invalid client").body())
        now = self.clock()
        with self._state_lock:
            info = self._refresh_tokens.get(str(params.get("refresh_token") or ""))
            if (info is None or info["state"] != "active"
                    or now - info["issued_at"] > REFRESH_TOKEN_TTL_S):
                return Response(400, _Error(400, "invalid_grant", "Invalid grant").body())
            info["state"] = "spent"
            access, refresh = secrets.token_hex(35), secrets.token_hex(35)
            self._access_tokens[access] = now + self.access_token_ttl_s
            self._refresh_tokens[refresh] = {"state": "active", "issued_at": now}
            self.token_refreshes += 1
        return Response(200, {
            "access_token": access,
            "expires": int(now + self.access_token_ttl_s),
            "expires_in": self.access_token_ttl_s,
            "scope": "crm,user",
            "domain": "oauth.bitrix.info",
            "server_endpoint": "https://oauth.bitrix.info/rest/",
            "status": "L",
            "client_endpoint": f"{self.base_url}/rest/",
            "member_id": self.member_id,
            "user_id": self.webhook_user_id,
            "refresh_token": refresh,
        })

    # -- limits ------------------------------------------------------------------------------
    def _bucket_take(self) -> bool:
        """Leaky bucket: +1 per request, drains ``drain_per_s``; over ``bucket_size`` → refuse."""
        with self._state_lock:
            now = time.monotonic()
            self._bucket_level = max(0.0, self._bucket_level
                                     - (now - self._bucket_t) * self.drain_per_s)
            self._bucket_t = now
            if self._bucket_level + 1 > self.bucket_size:
                return False
            self._bucket_level += 1
            return True

    def _operating_of(self, method: str) -> tuple[float, float | None]:
        """(seconds used in the last ten minutes, when the oldest bucket drops out)."""
        minute_now = int(self.clock() // 60)
        buckets = self._operating.get(method, {})
        for minute in [m for m in buckets if m <= minute_now - OPERATING_BUCKETS]:
            del buckets[minute]
        if not buckets:
            return 0.0, None
        return sum(buckets.values()), (min(buckets) + OPERATING_BUCKETS) * 60.0

    def _charge(self, method: str) -> None:
        """Refuse a blocked method; otherwise charge it its (simulated) execution time."""
        with self._state_lock:
            used, _ = self._operating_of(method)
            if self.operating_limit_s is not None and used >= self.operating_limit_s:
                raise _Error(429, "OPERATION_TIME_LIMIT",
                             "Method is blocked due to operation time limit.")
            minute = int(self.clock() // 60)
            buckets = self._operating.setdefault(method, {})
            buckets[minute] = buckets.get(minute, 0.0) + self.operating_cost_s

    def _time_block(self, t0: float, processing: float, method: str | None = None, *,
                    operating: float | None = None, reset_at: float | None = None) -> dict:
        t1 = time.time()
        if method is not None and operating is None:
            with self._state_lock:
                operating, reset_at = self._operating_of(method)
        block: dict[str, Any] = {
            "start": round(t0, 4), "finish": round(t1, 4), "duration": round(t1 - t0, 4),
            "processing": round(processing, 4), "date_start": iso(t0), "date_finish": iso(t1),
        }
        if reset_at is not None:
            block["operating_reset_at"] = int(reset_at)
        block["operating"] = round(operating or 0.0, 4)
        return block

    # -- methods -----------------------------------------------------------------------------
    def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One method call → the envelope without ``time`` (raises ``_Error``)."""
        handlers = {
            "crm.status.list": self._status_list,
            "crm.category.list": self._category_list,
            "crm.dealcategory.list": self._dealcategory_list,
            "crm.dealcategory.stage.list": self._dealcategory_stage_list,
            "crm.stagehistory.list": self._stagehistory_list,
            "user.get": self._user_get,
            "user.current": self._user_current,
            "crm.contact.userfield.list": self._userfield_list,
            "crm.contact.userfield.add": self._userfield_add,
            "crm.contact.get": self._contact_get,
            "crm.contact.update": self._contact_update,
            "crm.activity.todo.add": self._todo_add,
            "crm.activity.list": self._activity_list,
            "crm.activity.update": self._activity_update,
            "crm.deal.add": self._deal_add,
        }
        if method not in _LIST_METHODS and method not in handlers:
            raise _Error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        with self._state_lock:
            queued = self._method_faults.get(method)
            if queued:
                status, code, description, _ = queued[0]
                queued[0][3] -= 1
                if queued[0][3] <= 0:
                    queued.pop(0)
                raise _Error(status, code, description)
        self._charge(method)
        with self._state_lock:
            if method in _LIST_METHODS:
                return self._crm_list(_LIST_METHODS[method], params)
            return handlers[method](params)

    @staticmethod
    def _dict_param(params: dict[str, Any], name: str) -> dict[str, Any]:
        value = params.get(name)
        if value in (None, "", []):
            return {}
        if not isinstance(value, dict):
            raise _Error(400, "", f"Parameter '{name}' must be array.")
        return value

    def _crm_list(self, entity: str, params: dict[str, Any]) -> dict[str, Any]:
        filters = self._dict_param(params, "filter")
        order = self._dict_param(params, "order")
        select = params.get("select") or []
        if isinstance(select, str):
            select = [select]
        if not isinstance(select, list):
            raise _Error(400, "", "Parameter 'select' must be array.")
        rows = [r for r in self.data[entity] if _match(r, filters)]
        rows = _sort(rows, order)
        chunk, total, nxt = _page(rows, params)
        body: dict[str, Any] = {"result": [self._select(r, select) for r in chunk],
                                "total": total}
        if entity in self.edit_between_pages:
            self._edit_after_page(entity, chunk)
        if nxt is not None:
            body["next"] = nxt
        return body

    @staticmethod
    def _select(row: dict, select: list[str]) -> dict[str, Any]:
        names = [str(s) for s in select]
        standard = not names or "*" in names
        out: dict[str, Any] = {}
        for key, value in row.items():
            if key == "ID" or key in names:
                out[key] = value
            elif key in MULTIFIELDS:
                continue  # never by mask
            elif key.startswith("UF_"):
                if "UF_*" in names:
                    out[key] = value
            elif standard:
                out[key] = value
        return stringify(out)

    def _status_list(self, params: dict[str, Any]) -> dict[str, Any]:
        filters = self._dict_param(params, "filter")
        rows = _sort([r for r in self.data["statuses"] if _match(r, filters)],
                     self._dict_param(params, "order") or {"SORT": "ASC", "ID": "ASC"})
        return {"result": [stringify(r) for r in rows], "total": len(rows)}

    def _category_list(self, params: dict[str, Any]) -> dict[str, Any]:
        if str(params.get("entityTypeId")) != "2":
            raise _Error(400, "NOT_FOUND", "Smart process not found")
        rows = _sort(self.data["categories"], {"sort": "ASC", "id": "ASC"})
        chunk, total, nxt = _page(rows, params)
        body: dict[str, Any] = {"result": {"categories": copy.deepcopy(chunk)}, "total": total}
        if nxt is not None:
            body["next"] = nxt
        return body

    def _dealcategory_list(self, params: dict[str, Any]) -> dict[str, Any]:
        rows = [{"ID": c.get("id"), "CREATED_DATE": c.get("createdDate"), "NAME": c.get("name"),
                 "IS_LOCKED": "N", "SORT": c.get("sort")}
                for c in self.data["categories"] if str(c.get("id")) != "0"]
        return {"result": stringify(rows), "total": len(rows)}

    def _dealcategory_stage_list(self, params: dict[str, Any]) -> dict[str, Any]:
        cat = str(params.get("id", "0") or "0")
        entity_id = "DEAL_STAGE" if cat == "0" else f"DEAL_STAGE_{cat}"
        rows = [{"NAME": s.get("NAME"), "SORT": s.get("SORT"), "STATUS_ID": s.get("STATUS_ID")}
                for s in _sort(self.data["statuses"], {"SORT": "ASC"})
                if s.get("ENTITY_ID") == entity_id]
        return {"result": stringify(rows), "total": len(rows)}

    def _stagehistory_list(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            type_id = int(params.get("entityTypeId"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _Error(400, "ENTITY_TYPE_NOT_SUPPORTED",
                         "Entity type is not supported") from None
        if type_id not in (1, 2):
            raise _Error(400, "ENTITY_TYPE_NOT_SUPPORTED",
                         f"Entity type {type_id} is not supported")
        filters = self._dict_param(params, "filter")
        for key in filters:
            field = re.sub(r"^(>=|<=|!=|>|<|=|!|@)", "", key)
            if field not in _STAGEHISTORY_FILTER_FIELDS:
                raise _Error(400, "INVALID_ARG_VALUE",
                             f"Invalid filter: field '{field}' is not allowed in filter")
        rows = [r for r in self.data["stagehistory"]
                if int(r.get("ENTITY_TYPE_ID", 0)) == type_id and _match(r, filters)]
        rows = _sort(rows, self._dict_param(params, "order"))
        chunk, total, nxt = _page(rows, params)
        select = params.get("select") or []
        items = []
        for row in chunk:
            item = {k: _native(v) for k, v in row.items() if k != "ENTITY_TYPE_ID"
                    and (not select or k in select or k == "ID")}
            items.append(item)
        body: dict[str, Any] = {"result": {"items": items}, "total": total}
        if nxt is not None:
            body["next"] = nxt
        return body

    def _user_get(self, params: dict[str, Any]) -> dict[str, Any]:
        filters = self._dict_param(params, "FILTER") or self._dict_param(params, "filter")
        sort = str(params.get("sort") or params.get("SORT") or "ID")
        order = str(params.get("order") or params.get("ORDER") or "ASC")
        rows = _sort([r for r in self.data["users"] if _match(r, filters)], {sort: order})
        chunk, total, nxt = _page(rows, params)
        body: dict[str, Any] = {"result": [stringify(r) for r in chunk], "total": total}
        if nxt is not None:
            body["next"] = nxt
        return body

    def _user_current(self, params: dict[str, Any]) -> dict[str, Any]:
        """The user behind the webhook or token (the emulator's tokens all belong to the
        webhook's user): the cheapest authenticated call, used by `voronka doctor`."""
        me = next((r for r in self.data["users"]
                   if str(r.get("ID")) == str(self.webhook_user_id)),
                  {"ID": self.webhook_user_id, "ACTIVE": True})
        return {"result": stringify(me)}

    # -- write side (activation_apis.md §2) ---------------------------------------------------
    def _log_write(self, method: str, params: dict[str, Any]) -> None:
        if method == "batch":
            cmd = params.get("cmd")
            lines = list(cmd.values()) if isinstance(cmd, dict) else (
                cmd if isinstance(cmd, list) else [])
            methods = [str(line).partition("?")[0].strip().lower() for line in lines]
            if any(m in WRITE_METHODS for m in methods):
                with self._state_lock:
                    self._writes.append(("batch", len(methods)))
        elif method in WRITE_METHODS:
            with self._state_lock:
                self._writes.append((method, 1))

    @staticmethod
    def _param(params: dict[str, Any], name: str) -> Any:
        """A parameter by name, any case (legacy methods take ``ID``/``id``, ``FIELDS``/
        ``fields``)."""
        if name in params:
            return params[name]
        lower = name.lower()
        return next((v for k, v in params.items() if str(k).lower() == lower), None)

    def _fields_param(self, params: dict[str, Any]) -> dict[str, Any]:
        fields = self._param(params, "fields")
        if not isinstance(fields, dict):
            raise _Error(400, "", "Parameter 'fields' must be array.")
        return fields

    def _row(self, entity: str, item_id: Any) -> dict | None:
        key = str(item_id)
        return next((r for r in self.data[entity] if str(r.get("ID")) == key), None)

    def _user_exists(self, user_id: Any) -> bool:
        if not self.data["users"]:  # a portal without user rows: anyone goes
            return True
        return self._row("users", user_id) is not None

    def _now_after(self, entity: str) -> float:
        """Now, but strictly after every ``DATE_MODIFY`` of ``entity`` (the synthetic portal
        may be dated ahead of the wall clock: a new row must still land in the next
        incremental window)."""
        high = self._modified_high.get(entity)
        if high is None:
            stamps = [p.timestamp() for r in self.data[entity]
                      if (p := parse_datetime(r.get("DATE_MODIFY"))) is not None]
            high = max(stamps, default=0.0)
        ts = max(time.time(), high + 1.0)
        self._modified_high[entity] = ts
        return ts

    @staticmethod
    def _int(value: Any, name: str, code: str = "") -> int:
        try:
            return int(str(value).strip())
        except (TypeError, ValueError):
            raise _Error(400, code, f"Parameter '{name}' must be an integer.") from None

    # user fields ------------------------------------------------------------------------------
    def _add_userfield(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Validate and store one contact user-field definition (``crm.contact.userfield.add``
        rules); returns it."""
        type_id = str(fields.get("USER_TYPE_ID") or "").strip()
        raw_name = str(fields.get("FIELD_NAME") or "").strip().upper()
        if not type_id or not raw_name:
            raise _Error(400, "ERROR_CORE", "FIELD_NAME and USER_TYPE_ID are required.")
        if type_id not in UF_TYPES:
            raise _Error(400, "ERROR_CORE", f"Unknown user field type '{type_id}'.")
        # [decided] a code that already carries the prefix is kept as is
        name = raw_name if raw_name.startswith(UF_PREFIX) else UF_PREFIX + raw_name
        if not re.fullmatch(r"[A-Z0-9_]+", name):
            raise _Error(400, "ERROR_CORE", "FIELD_NAME may contain only A-Z, 0-9 and _.")
        if len(name) > UF_MAX_LEN:
            raise _Error(400, "ERROR_CORE",
                         f"FIELD_NAME is longer than {UF_MAX_LEN} characters with the "
                         f"{UF_PREFIX} prefix.")
        if any(f["FIELD_NAME"] == name for f in self._userfields):
            raise _Error(400, "", f"A user field named {name} already exists.")
        multiple = str(fields.get("MULTIPLE") or "N").upper() in ("Y", "1", "TRUE")
        if multiple and type_id == "boolean":
            raise _Error(400, "ERROR_CORE", "A boolean user field cannot be multiple.")
        label = fields.get("LABEL") or fields.get("EDIT_FORM_LABEL") or name
        if isinstance(label, dict):  # per-language labels
            label = label.get("ru") or label.get("en") or next(iter(label.values()), name)
        items = []
        for n, item in enumerate(fields.get("LIST") or [], start=1):
            value = item.get("VALUE") if isinstance(item, dict) else item
            items.append({"ID": str(len(self._userfields) * 100 + n), "VALUE": str(value)})
        definition = {
            "ID": len(self._userfields) + 1, "ENTITY_ID": "CRM_CONTACT", "FIELD_NAME": name,
            "USER_TYPE_ID": type_id, "XML_ID": fields.get("XML_ID"),
            "SORT": int(fields.get("SORT") or 100), "MULTIPLE": "Y" if multiple else "N",
            "MANDATORY": "Y" if str(fields.get("MANDATORY") or "N").upper() == "Y" else "N",
            "SHOW_FILTER": str(fields.get("SHOW_FILTER") or "N"), "SHOW_IN_LIST": "Y",
            "EDIT_IN_LIST": "Y", "IS_SEARCHABLE": "N", "SETTINGS": fields.get("SETTINGS") or {},
            "EDIT_FORM_LABEL": str(label), "LIST_COLUMN_LABEL": str(label),
            "LIST_FILTER_LABEL": str(label), "ERROR_MESSAGE": None, "HELP_MESSAGE": None,
        }
        if type_id == "enumeration":
            definition["LIST"] = items
        self._userfields.append(definition)
        return definition

    def _userfield_list(self, params: dict[str, Any]) -> dict[str, Any]:
        filters = {k: v for k, v in self._dict_param(params, "filter").items()
                   if str(k).upper() != "LANG"}
        rows = _sort([f for f in self._userfields if _match(f, filters)],
                     self._dict_param(params, "order") or {"SORT": "ASC", "ID": "ASC"})
        chunk, total, nxt = _page(rows, params)
        body: dict[str, Any] = {"result": [stringify(r) for r in chunk], "total": total}
        if nxt is not None:
            body["next"] = nxt
        return body

    def _userfield_add(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"result": self._add_userfield(self._fields_param(params))["ID"]}

    def _uf_value(self, definition: dict[str, Any], value: Any) -> Any:
        """A user-field value as the portal stores it, or a 400 naming the field (never the
        value: it may be personal data)."""
        name, type_id = definition["FIELD_NAME"], definition["USER_TYPE_ID"]
        if definition["MULTIPLE"] == "Y":
            values = value if isinstance(value, list) else ([] if value in (None, "") else
                                                            [value])
            return [self._uf_scalar(name, type_id, definition, v) for v in values]
        if isinstance(value, list):
            raise _Error(400, "", f"Field {name} is not multiple.")
        return self._uf_scalar(name, type_id, definition, value)

    @staticmethod
    def _uf_scalar(name: str, type_id: str, definition: dict[str, Any], value: Any) -> Any:
        if value is None or value == "":
            return None
        text = str(value).strip()
        bad = _Error(400, "", f"Invalid value for user field {name} ({type_id}).")
        if type_id == "boolean":  # [decided] Y/N, 1/0, true/false; stored "1"/"0"
            if text.lower() in _TRUE:
                return "1"
            if text.lower() in _FALSE:
                return "0"
            raise bad
        if type_id in ("integer", "employee"):
            if not re.fullmatch(r"-?\d+", text):
                raise bad
            return int(text)
        if type_id == "double":
            try:
                return float(text)
            except ValueError:
                raise bad from None
        if type_id == "date":
            try:
                return dt.date.fromisoformat(text[:10]).isoformat()
            except ValueError:
                raise bad from None
        if type_id == "datetime":
            parsed = parse_datetime(text)
            if parsed is None:
                raise bad
            return parsed.astimezone(PORTAL_TZ).isoformat(timespec="seconds")
        if type_id == "enumeration":  # item IDs (activation_apis.md §2.b)
            if text not in {i["ID"] for i in definition.get("LIST", [])}:
                raise bad
            return text
        return text

    def _contact_get(self, params: dict[str, Any]) -> dict[str, Any]:
        row = self._row("contacts", self._param(params, "id"))
        if row is None:
            raise _Error(400, "", "Not found")
        return {"result": stringify(copy.deepcopy(row))}

    def _contact_update(self, params: dict[str, Any]) -> dict[str, Any]:
        raw_id = self._param(params, "id")
        if raw_id in (None, "") or not re.fullmatch(r"\d+", str(raw_id).strip()):
            raise _Error(400, "", "ID is not defined or invalid.")
        fields = self._fields_param(params)
        if self._row("contacts", raw_id) is None:
            raise _Error(400, "", "Contact is not found")
        definitions = {f["FIELD_NAME"]: f for f in self._userfields}
        changes: dict[str, Any] = {}
        for key, value in fields.items():
            name = str(key).upper()
            if name in _READ_ONLY_CONTACT_FIELDS:
                continue  # read-only: ignored, as the portal does
            if name in MULTIFIELDS:
                raise _Error(400, "", f"The emulator does not update multifield {name}.")
            if name.startswith("UF_"):
                definition = definitions.get(name)
                if definition is None:  # [decided] an unknown user field is refused
                    raise _Error(400, "", f"Unknown user field {name}.")
                changes[name] = self._uf_value(definition, value)
            else:
                changes[name] = value
        self.update("contacts", raw_id, **changes)
        return {"result": True}

    # to-dos -----------------------------------------------------------------------------------
    def _todo_add(self, params: dict[str, Any]) -> dict[str, Any]:
        for name in ("ownerTypeId", "ownerId", "deadline"):
            if params.get(name) in (None, ""):
                raise _Error(400, "100", f"Could not find value for parameter {{{name}}}")
        owner_type = self._int(params["ownerTypeId"], "ownerTypeId", "100")
        owner_id = self._int(params["ownerId"], "ownerId", "100")
        deadline = parse_datetime(params["deadline"])
        if deadline is None or not re.search(r"\d[T ]\d", str(params["deadline"])):
            raise _Error(400, "WRONG_DATETIME_FORMAT", "Wrong datetime format.")
        entity = OWNER_TYPES.get(owner_type)
        if entity is None and owner_type != 4:
            raise _Error(400, "NOT_FOUND", "Not found.")
        if entity is None or self._row(entity, owner_id) is None:
            raise _Error(400, "OWNER_NOT_FOUND", "Owner not found.")
        # [decided] the default responsible is the calling user (the reference leaves it open)
        responsible = params.get("responsibleId")
        responsible = (self.webhook_user_id if responsible in (None, "")
                       else self._int(responsible, "responsibleId"))
        if not self._user_exists(responsible):
            raise _Error(400, "NOT_FOUND", "Responsible user not found.")
        pings = params.get("pingOffsets") or []
        now = iso(time.time())
        activity = {
            "ID": max((a["ID"] for a in self._activities), default=0) + 1,
            "OWNER_TYPE_ID": owner_type, "OWNER_ID": owner_id, "TYPE_ID": 6,
            "PROVIDER_ID": "CRM_TODO", "PROVIDER_TYPE_ID": "TODO",
            "SUBJECT": str(params.get("title") or ""),
            "DESCRIPTION": str(params.get("description") or ""), "DESCRIPTION_TYPE": 1,
            "RESPONSIBLE_ID": responsible, "AUTHOR_ID": self.webhook_user_id,
            "EDITOR_ID": self.webhook_user_id,
            "DEADLINE": deadline.astimezone(PORTAL_TZ).isoformat(timespec="seconds"),
            "COMPLETED": "N", "STATUS": 1, "CREATED": now, "LAST_UPDATED": now,
            "PARENT_ID": params.get("parentActivityId") or 0,
            "PING_OFFSETS": [int(p) for p in pings] if isinstance(pings, list) else [],
        }
        self._activities.append(activity)
        return {"result": {"id": activity["ID"]}}

    def _activity(self, activity_id: Any) -> dict[str, Any]:
        key = str(activity_id)
        row = next((a for a in self._activities if str(a["ID"]) == key), None)
        if row is None:
            raise _Error(400, "NOT_FOUND", "Activity not found.")
        return row

    def _activity_list(self, params: dict[str, Any]) -> dict[str, Any]:
        filters = self._dict_param(params, "filter")
        rows = _sort([a for a in self._activities if _match(a, filters)],
                     self._dict_param(params, "order"))
        chunk, total, nxt = _page(rows, params)
        select = params.get("select") or []
        if isinstance(select, str):
            select = [select]
        names = {str(s) for s in select}
        out = [{k: v for k, v in a.items() if not names or "*" in names or k in names
                or k == "ID"} for a in chunk]
        body: dict[str, Any] = {"result": stringify(out), "total": total}
        if nxt is not None:
            body["next"] = nxt
        return body

    def _activity_update(self, params: dict[str, Any]) -> dict[str, Any]:
        row = self._activity(self._param(params, "id"))
        fields = self._fields_param(params)
        for key, value in fields.items():
            name = str(key).upper()
            if name == "COMPLETED":
                done = str(value).upper() in ("Y", "1", "TRUE")
                row["COMPLETED"], row["STATUS"] = ("Y", 2) if done else ("N", 1)
            elif name == "DEADLINE":
                parsed = parse_datetime(value)
                if parsed is None:
                    raise _Error(400, "WRONG_DATETIME_FORMAT", "Wrong datetime format.")
                row["DEADLINE"] = parsed.astimezone(PORTAL_TZ).isoformat(timespec="seconds")
            elif name == "RESPONSIBLE_ID":
                row["RESPONSIBLE_ID"] = self._int(value, "RESPONSIBLE_ID")
            elif name in ("SUBJECT", "DESCRIPTION"):
                row[name] = str(value)
        row["LAST_UPDATED"] = iso(time.time())
        return {"result": True}

    # deals ------------------------------------------------------------------------------------
    def _stages(self, category: int) -> list[dict]:
        entity_id = "DEAL_STAGE" if category == 0 else f"DEAL_STAGE_{category}"
        return _sort([s for s in self.data["statuses"] if s.get("ENTITY_ID") == entity_id],
                     {"SORT": "ASC"})

    def _deal_add(self, params: dict[str, Any]) -> dict[str, Any]:
        fields = {str(k).upper(): v for k, v in self._fields_param(params).items()}
        category = self._int(fields.get("CATEGORY_ID") or 0, "CATEGORY_ID")
        if not any(str(c.get("id")) == str(category) for c in self.data["categories"]) and (
                category != 0):
            raise _Error(400, "", f"Category {category} is not found.")  # [decided]
        stages = self._stages(category)
        stage_id = fields.get("STAGE_ID")
        if stage_id in (None, ""):
            if not stages:
                raise _Error(400, "", f"Category {category} has no stages.")
            stage = stages[0]
        else:
            stage = next((s for s in stages if s.get("STATUS_ID") == str(stage_id)), None)
            if stage is None:  # [decided] a stage of another pipeline is refused
                raise _Error(400, "", f"Stage {stage_id} does not belong to category "
                                      f"{category}.")
        contact_ids = fields.pop("CONTACT_IDS", None)
        contacts = [fields["CONTACT_ID"]] if fields.get("CONTACT_ID") not in (None, "") else []
        if isinstance(contact_ids, list):
            contacts = [*contact_ids, *contacts]
        for contact in contacts:
            if self._row("contacts", contact) is None:
                raise _Error(400, "", f"Contact {contact} is not found.")
        assigned = self._int(fields.get("ASSIGNED_BY_ID") or self.webhook_user_id,
                             "ASSIGNED_BY_ID")
        if not self._user_exists(assigned):
            raise _Error(400, "", f"User {assigned} is not found.")
        opportunity = fields.get("OPPORTUNITY")
        try:
            opportunity = float(opportunity) if opportunity not in (None, "") else 0.0
        except (TypeError, ValueError):
            raise _Error(400, "", "OPPORTUNITY must be a number.") from None
        semantic = {"S": "S", "F": "F"}.get(str(stage.get("SEMANTICS") or ""), "P")
        deal_id = max((int(r["ID"]) for r in self.data["deals"]), default=0) + 1
        now = iso(self._now_after("deals"))
        row = {k: v for k, v in fields.items()
               if k not in ("ID", "DATE_CREATE", "DATE_MODIFY", "STAGE_SEMANTIC_ID")}
        row.update({
            "ID": deal_id, "TITLE": str(fields.get("TITLE") or f"Сделка #{deal_id}"),
            "TYPE_ID": fields.get("TYPE_ID") or "SALE", "CATEGORY_ID": category,
            "STAGE_ID": stage["STATUS_ID"], "STAGE_SEMANTIC_ID": semantic,
            "OPPORTUNITY": opportunity, "CURRENCY_ID": fields.get("CURRENCY_ID") or "RUB",
            "ASSIGNED_BY_ID": assigned, "CREATED_BY_ID": self.webhook_user_id,
            "MODIFY_BY_ID": self.webhook_user_id, "DATE_CREATE": now, "DATE_MODIFY": now,
            "MOVED_TIME": now, "OPENED": "Y", "CLOSED": "N" if semantic == "P" else "Y",
            "CONTACT_ID": int(contacts[0]) if contacts else None,
            "ORIGINATOR_ID": fields.get("ORIGINATOR_ID"), "ORIGIN_ID": fields.get("ORIGIN_ID"),
        })
        self.data["deals"].append(row)
        self._created_deal_ids.append(deal_id)
        history = [int(r["ID"]) for r in self.data["stagehistory"]
                   if int(r.get("ENTITY_TYPE_ID", 0)) == 2]
        self.data["stagehistory"].append({
            "ID": max(history, default=0) + 1, "ENTITY_TYPE_ID": 2, "TYPE_ID": 1,
            "OWNER_ID": deal_id, "CREATED_TIME": now, "CATEGORY_ID": category,
            "STAGE_SEMANTIC_ID": semantic, "STAGE_ID": stage["STATUS_ID"]})
        return {"result": deal_id}

    # -- batch -------------------------------------------------------------------------------
    def _batch(self, params: dict[str, Any]) -> dict[str, Any]:
        cmd = params.get("cmd")
        if isinstance(cmd, list):
            cmd = {str(i): v for i, v in enumerate(cmd)}
        if not isinstance(cmd, dict) or not cmd:
            raise _Error(400, "INVALID_REQUEST", "Parameter 'cmd' must be a non-empty array")
        if len(cmd) > MAX_BATCH:
            raise _Error(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
        halt = str(params.get("halt", "0")) not in ("0", "", "false", "False")
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        totals: dict[str, Any] = {}
        nexts: dict[str, Any] = {}
        times: dict[str, Any] = {}
        for key, line in cmd.items():
            t0 = time.time()
            method, _, query = str(line).partition("?")
            method = method.strip().lower()
            try:
                if method == "batch":
                    raise _Error(405, "ERROR_BATCH_METHOD_NOT_ALLOWED",
                                 "Method is not allowed for batch usage")
                sub = php_params(parse_qsl(query, keep_blank_values=True))
                sub.pop("auth", None)
                sub = self._resolve(sub, results)
                out = self._call(method, sub)
            except _Error as exc:
                errors[key] = exc.body()
                if halt:
                    break
                continue
            results[key] = out["result"]
            if "total" in out:
                totals[key] = out["total"]
            if "next" in out:
                nexts[key] = out["next"]
            times[key] = self._time_block(t0, self.operating_cost_s, method)
        return {"result": {
            "result": results or [],
            "result_error": errors or [],
            "result_total": totals or [],
            "result_next": nexts or [],
            "result_time": times or [],
        }}

    def _resolve(self, value: Any, results: dict[str, Any]) -> Any:
        if isinstance(value, dict):
            return {k: self._resolve(v, results) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v, results) for v in value]
        if not isinstance(value, str) or "$result[" not in value:
            return value

        def sub(m: re.Match[str]) -> str:
            ref = m.group(0)
            node: Any = results.get(m.group(1))
            for part in re.findall(r"\[([^\]]*)\]", m.group(2)):
                if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                elif isinstance(node, dict) and part in node:
                    node = node[part]
                else:
                    node = None
                    break
            if node is None or isinstance(node, dict | list):
                raise _Error(400, "INVALID_ARG_VALUE", f"Reference {ref} cannot be resolved")
            return str(node)

        return _REF.sub(sub, value)


def _native(value: Any) -> Any:
    """``crm.stagehistory.list`` typing: integers stay (or become) integers."""
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return value
