"""Local emulator of the UniSender API subset voronka writes to (activation_apis.md §3).

``/{lang}/api/{method}?format=json`` with GET or POST form parameters; ``api_key`` in the form
body or the query. Success is ``{"result": ...}``; an error ``{"error": "...", "code": "..."}``
(no ``result``, except the ``exclude``/``unsubscribe`` "not found" answer, which carries
``"result": ""`` as documented).

Methods: ``getLists``, ``createList`` (unique title), ``importContacts`` (PHP-style form arrays
``field_names[0]=email&data[0][0]=a@x.ru``; at most 500 rows; list membership through the
``email_list_ids``/``phone_list_ids`` columns, merged unless ``overwrite_lists=1``; role
addresses and malformed e-mails/phones are not imported and reported in ``result.log``),
``exclude`` (removes from the given lists only) and ``unsubscribe`` (marks unsubscribed).

Not in the reference, so chosen here [decided]:
- the HTTP status of an error envelope is ``error_status`` (200 by default, as the Go client
  assumes); a request outside ``/{lang}/api/`` is HTTP 404 with ``unknown_method``;
- only the ``lang`` path segment given to the constructor is served;
- a ``"429"`` fault answers the ``api_call_limit_exceeded_for_api_key`` envelope (``code=``
  overrides it, e.g. ``retry_later``) with ``error_status`` (``status=`` overrides it); a
  ``"5xx"`` fault a JSON ``unspecified`` envelope with that 5xx status;
- ``"drop"`` with ``after_write=True`` (served by ``_base``) applies the call, then drops
  the connection;
- log codes ``invalid_email``, ``role_address``, ``invalid_phone``, ``no_contact``; log indexes
  are 0-based rows of ``data``; a log message names the rejected value, as a real
  service's text may (clients must not pass it on);
- an unknown list id in a ``*_list_ids`` column fails the whole call (``invalid_arg``) before
  anything is applied; a row with a rejected e-mail is not imported at all, even if its phone
  is valid;
- phones are stored as digits only (``+7 916 123-45-67`` -> ``79161234567``), 10..15 digits;
  e-mails trimmed and lower-cased;
- a contact unsubscribed from a list is never re-added to it by a later import.
"""

from __future__ import annotations

import html
import itertools
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from ._base import EmulatorServer, Fault, Request, Response, SlidingWindow

JSON = "application/json; charset=utf-8"
LANGS = ("ru", "en")
KINDS = ("email", "phone")
MAX_IMPORT_ROWS = 500
MAX_TAGS = 10
ROLE_LOCALS = frozenset({"info", "sales", "no-reply", "all"})
EMAIL_STATUSES = frozenset({"new", "active", "inactive", "unsubscribed"})
_PATH = re.compile(r"^/(?P<lang>[a-z]{2})/api/(?P<method>[A-Za-z]+)/?$")
_EMAIL = re.compile(r"^[^@\s\"',;<>]+@[^@\s\"',;<>]+\.[^@\s\"',;<>]+$")
_PHONE_JUNK = re.compile(r"[\s()+.-]")
_FIELD_NAME = re.compile(r"^field_names\[(\d*)\]$")
_DATA_CELL = re.compile(r"^data\[(\d+)\]\[(\d+)\]$")


class UniSenderError(Exception):
    """An error envelope to answer (``code`` is UniSender's)."""

    def __init__(self, code: str, message: str, *, result: Any = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.result, self.status = code, message, result, status


def normalise(kind: str, value: str) -> str:
    """The stored form of a contact: a trimmed lower-case e-mail, a phone's digits."""
    value = (value or "").strip()
    return value.lower() if kind == "email" else _PHONE_JUNK.sub("", value)


def _contact_problem(kind: str, raw: str, value: str) -> tuple[str, str] | None:
    """(log code, message) when the contact is not importable, else None."""
    if kind == "email":
        if not _EMAIL.match(value):
            return "invalid_email", f'Invalid e-mail address "{raw}"'
        if value.split("@", 1)[0] in ROLE_LOCALS:
            return "role_address", f'Role address "{raw}" is not accepted (anti-spam policy)'
        return None
    if not (value.isdigit() and 10 <= len(value) <= 15):
        return "invalid_phone", f'Invalid phone number "{raw}"'
    return None


class UniSenderEmulator(EmulatorServer):
    """Lists and contacts of one UniSender account, with its 1200 calls/min limit.

    Inspection (thread-safe): ``list_members(list_id, kind)``, ``unsubscribed(list_id, kind)``,
    ``lists()`` and ``calls()`` (``(method, n_rows)`` per executed call; the key is never
    recorded)."""

    def __init__(self, api_key: str = "demo-unisender-key", lang: str = "ru",
                 rate_limit_per_min: int = 1200, error_status: int = 200,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        if lang not in LANGS:
            raise ValueError(f"lang must be one of {LANGS}")
        self.api_key = api_key
        self.lang = lang
        self.error_status = int(error_status)
        self.rate_limit_per_min = rate_limit_per_min
        self.rate_window = SlidingWindow(rate_limit_per_min, 60.0)
        self._lock = threading.RLock()
        self._lists: dict[int, str] = {}
        # (kind, value) -> {"lists": set[int], "unsubscribed": set[int], "status", "tags",
        # "fields"}
        self._contacts: dict[tuple[str, str], dict[str, Any]] = {}
        self._calls: list[tuple[str, int]] = []
        self._ids = itertools.count(1)

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(base_url={self.base_url!r}, lang={self.lang!r})"

    # -- inspection --------------------------------------------------------------------------
    def list_members(self, list_id: int | str, kind: str = "email") -> set[str]:
        """Active members of a list: e-mails (lower-case) or phones (digits only)."""
        lid = int(list_id)
        with self._lock:
            return {value for (k, value), c in self._contacts.items()
                    if k == kind and lid in c["lists"]}

    def unsubscribed(self, list_id: int | str, kind: str = "email") -> set[str]:
        """Contacts marked unsubscribed from a list."""
        lid = int(list_id)
        with self._lock:
            return {value for (k, value), c in self._contacts.items()
                    if k == kind and lid in c["unsubscribed"]}

    def lists(self) -> dict[int, str]:
        """List id -> title."""
        with self._lock:
            return dict(self._lists)

    def calls(self) -> list[tuple[str, int]]:
        """``(method, n_rows)`` of every executed call in order (rows of an import, 1 for
        ``exclude``/``unsubscribe``, 0 otherwise)."""
        with self._lock:
            return list(self._calls)

    # -- envelope ----------------------------------------------------------------------------
    def _error(self, exc: UniSenderError) -> Response:
        body: dict[str, Any] = {"error": html.escape(exc.message, quote=False),
                                "code": exc.code}
        if exc.result is not None:
            body["result"] = exc.result
        return Response(exc.status or self.error_status, body, JSON)

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            return self._error(UniSenderError(
                str(fault.params.get("code", "api_call_limit_exceeded_for_api_key")),
                "API call limit exceeded, try again later",
                status=int(fault.params["status"]) if "status" in fault.params else None))
        if fault.kind == "5xx":
            return self._error(UniSenderError("unspecified", "Internal server error",
                                              status=int(fault.params["status"])))
        if fault.kind == "expired_token":
            return self._error(UniSenderError("invalid_api_key", "Invalid API key"))
        raise AssertionError(fault.kind)  # pragma: no cover

    # -- routing -----------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        try:
            return Response(200, {"result": self._route(request)}, JSON)
        except UniSenderError as exc:
            return self._error(exc)

    @staticmethod
    def _params(request: Request) -> list[tuple[str, str]]:
        """Query pairs, then form pairs (a form value wins where a name repeats)."""
        pairs = list(request.query_pairs)
        ctype = (request.header("Content-Type") or "").lower()
        if request.body and ("x-www-form-urlencoded" in ctype or not ctype):
            pairs += parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        return pairs

    def _route(self, request: Request) -> Any:
        match = _PATH.match(request.path)
        if match is None or match["lang"] != self.lang:
            raise UniSenderError("unknown_method", f"Unknown path {request.path}", status=404)
        if request.method not in ("GET", "POST"):
            raise UniSenderError("invalid_arg", "Use GET or POST", status=405)
        pairs = self._params(request)
        params = dict(pairs)
        if params.get("api_key") != self.api_key:
            raise UniSenderError("invalid_api_key", "Invalid API key")
        if self.rate_window.hit(request.arrived):
            raise UniSenderError(
                "api_call_limit_exceeded_for_api_key",
                f"API call limit exceeded ({self.rate_limit_per_min} calls per minute)")
        method = match["method"]
        handler = {
            "getLists": self._get_lists,
            "createList": self._create_list,
            "importContacts": self._import,
            "exclude": self._exclude,
            "unsubscribe": self._unsubscribe,
        }.get(method)
        if handler is None:
            raise UniSenderError("unknown_method", f"Unknown method {method}")
        with self._lock:
            result, rows = handler(params, pairs)
            self._calls.append((method, rows))
        return result

    # -- lists -------------------------------------------------------------------------------
    def _get_lists(self, params: dict[str, str], pairs: list[tuple[str, str]]
                   ) -> tuple[Any, int]:
        return [{"id": lid, "title": title} for lid, title in sorted(self._lists.items())], 0

    def _create_list(self, params: dict[str, str], pairs: list[tuple[str, str]]
                     ) -> tuple[Any, int]:
        title = (params.get("title") or "").strip()
        if not title:
            raise UniSenderError("invalid_arg", "Argument title is required")
        if title in self._lists.values():
            raise UniSenderError("invalid_arg", f'A list titled "{title}" already exists')
        lid = next(self._ids)
        self._lists[lid] = title
        return {"id": lid}, 0

    def _list_ids(self, text: str | None, *, all_if_empty: bool) -> set[int]:
        """Comma-separated list ids; every one must exist."""
        parts = [p.strip() for p in (text or "").split(",") if p.strip()]
        if not parts:
            return set(self._lists) if all_if_empty else set()
        ids: set[int] = set()
        for part in parts:
            if not part.isdigit() or int(part) not in self._lists:
                raise UniSenderError("invalid_arg", f"List {part} not found")
            ids.add(int(part))
        return ids

    # -- importContacts ----------------------------------------------------------------------
    @staticmethod
    def _table(pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[list[str]]]:
        """``field_names[]`` and ``data[][]`` of PHP-style form arrays."""
        names: dict[int, str] = {}
        cells: dict[int, dict[int, str]] = {}
        appended = 0
        for key, value in pairs:
            named = _FIELD_NAME.match(key)
            if named:
                index = int(named[1]) if named[1] else appended
                appended = max(appended, index) + 1
                names[index] = value.strip().lower()
                continue
            cell = _DATA_CELL.match(key)
            if cell:
                cells.setdefault(int(cell[1]), {})[int(cell[2])] = value
        if sorted(names) != list(range(len(names))):
            raise UniSenderError("invalid_arg", "field_names must be numbered from 0")
        if sorted(cells) != list(range(len(cells))):
            raise UniSenderError("invalid_arg", "data rows must be numbered from 0")
        fields = [names[i] for i in range(len(names))]
        rows = []
        for i in range(len(cells)):
            if any(j >= len(fields) for j in cells[i]):
                raise UniSenderError("invalid_arg", f"data[{i}] has more cells than field_names")
            rows.append([cells[i].get(j, "") for j in range(len(fields))])
        return fields, rows

    def _import(self, params: dict[str, str], pairs: list[tuple[str, str]]) -> tuple[Any, int]:
        fields, rows = self._table(pairs)
        if not fields:
            raise UniSenderError("invalid_arg", "Argument field_names is required")
        if len(set(fields)) != len(fields):
            raise UniSenderError("invalid_arg", "field_names has duplicate names")
        if "email" not in fields and "phone" not in fields:
            raise UniSenderError("invalid_arg", "field_names must include email or phone")
        if not rows:
            raise UniSenderError("invalid_arg", "Argument data is required")
        if len(rows) > MAX_IMPORT_ROWS:
            raise UniSenderError("invalid_arg", f"At most {MAX_IMPORT_ROWS} contacts per call "
                                                f"({len(rows)} given)")
        overwrite_lists = params.get("overwrite_lists") == "1"
        overwrite_tags = params.get("overwrite_tags") == "1"
        records = [dict(zip(fields, row, strict=True)) for row in rows]
        # every list id is checked before anything is applied
        lists = [{(kind, col): self._list_ids(rec.get(f"{kind}_{col}"), all_if_empty=False)
                  for kind in KINDS for col in ("list_ids", "excluded_list_ids")}
                 for rec in records]
        counts = {"total": len(rows), "inserted": 0, "updated": 0, "deleted": 0,
                  "new_emails": 0, "invalid": 0}
        log: list[dict[str, Any]] = []
        for index, (rec, row_lists) in enumerate(zip(records, lists, strict=True)):
            contacts: dict[str, str] = {}
            problem = None
            for kind in KINDS:
                raw = (rec.get(kind) or "").strip()
                if raw:
                    contacts[kind] = normalise(kind, raw)
                    problem = problem or _contact_problem(kind, raw, contacts[kind])
            if not contacts:
                problem = ("no_contact", "The row has neither an e-mail nor a phone")
            if problem is not None:
                counts["invalid"] += 1
                log.append({"index": index, "code": problem[0], "message": problem[1]})
                continue
            keys = list(contacts.items())
            existed = keys[0] in self._contacts
            if rec.get("delete") == "1":
                for key in keys:
                    self._contacts.pop(key, None)
                counts["deleted"] += int(existed)
                continue
            counts["updated" if existed else "inserted"] += 1
            for key in keys:
                kind = key[0]
                contact = self._contacts.get(key)
                if contact is None:
                    status = (rec.get(f"{kind}_status") or "new").strip()
                    contact = self._contacts[key] = {
                        "lists": set(), "unsubscribed": set(), "tags": set(), "fields": {},
                        "status": status if status in EMAIL_STATUSES else "new"}
                    counts["new_emails"] += int(kind == "email")
                if f"{kind}_list_ids" in rec:
                    wanted = row_lists[(kind, "list_ids")]
                    if overwrite_lists:
                        contact["lists"] = set(wanted)
                    else:
                        contact["lists"] |= wanted
                    contact["lists"] -= contact["unsubscribed"]
                contact["lists"] -= row_lists[(kind, "excluded_list_ids")]
                if "tags" in rec:
                    tags = {t.strip() for t in rec["tags"].split(",") if t.strip()}
                    contact["tags"] = (tags if overwrite_tags else contact["tags"] | tags)
                    contact["tags"] = set(sorted(contact["tags"])[:MAX_TAGS])
                contact["fields"].update({k: v for k, v in rec.items() if k not in (
                    *KINDS, "delete", "tags") and not k.startswith(KINDS)})
        return {**counts, "log": log}, len(rows)

    # -- exclude / unsubscribe ---------------------------------------------------------------
    def _contact(self, params: dict[str, str]) -> tuple[dict[str, Any], set[int]]:
        kind = params.get("contact_type") or ""
        if kind not in KINDS:
            raise UniSenderError("invalid_arg", "contact_type must be email or phone")
        raw = (params.get("contact") or "").strip()
        value = normalise(kind, raw)
        if not raw or (kind == "email" and not _EMAIL.match(value)) or (
                kind == "phone" and not value.isdigit()):
            raise UniSenderError("invalid_arg", f'Invalid contact "{raw}"')
        contact = self._contacts.get((kind, value))
        if contact is None:
            raise UniSenderError("unspecified", f'Contact "{raw}" not found', result="")
        return contact, self._list_ids(params.get("list_ids"), all_if_empty=True)

    def _exclude(self, params: dict[str, str], pairs: list[tuple[str, str]]
                 ) -> tuple[Any, int]:
        contact, ids = self._contact(params)
        contact["lists"] -= ids
        return {}, 1

    def _unsubscribe(self, params: dict[str, str], pairs: list[tuple[str, str]]
                     ) -> tuple[Any, int]:
        contact, ids = self._contact(params)
        contact["lists"] -= ids
        contact["unsubscribed"] |= ids
        return {}, 1
