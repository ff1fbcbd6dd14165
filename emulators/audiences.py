"""Local emulators of the audience upload APIs (ad_apis.md §0.2, B1-B4): Meta custom audience
users, Google Data Manager audience members, Yandex Audiences CRM segments, VK Ads users lists.

Each emulator records what it received (``batches``: one entry per accepted or rejected
upload call; ``created``: one entry per audience created over HTTP, by Meta's
``act_<id>/customaudiences`` or Google's ``userLists`` create) and the resulting membership per
audience (``members(audience_id)``), so tests can assert that the platform saw exactly the
expected batches and holds exactly the expected members. Faults come from the shared
``FaultPlan`` (``faults.add("429")``, ``"5xx"``, ``"expired_token"``) and answer in each
platform's own error envelope.

Not in the notes, so chosen here [U]:
- Meta: Graph errors are HTTP 400 (as in ``meta_ads``); creating an audience needs ``name``,
  ``subtype=CUSTOM`` and a known ``customer_file_source`` (form, JSON or query parameters) and
  answers ``{"id"}``; a row whose hashed key is not 64 lowercase hex is counted in
  ``num_invalid_entries`` and not added; a replayed ``batch_seq``
  (a retry) is accepted again, any other gap is error 2650 / subcode 1870147; a ``"429"``
  fault is Graph's throttling answer (HTTP 400, code 80003), not an HTTP 429.
- Google: errors are ``google.rpc.Status`` with a ``BadRequest`` ``fieldViolations`` detail;
  members are matched (for removal) on any shared identifier; a created user list needs
  ``displayName`` and ``ingestedUserListInfo.uploadKeyTypes`` and takes members only through its
  own operating account; an optional ``POST /token`` refresh-token grant (``oauth_client``)
  issues the emulator's access token.
- Yandex: the error bodies ``{"errors": [{"error_type", "message"}], "code", "message"}`` of
  the Yandex management APIs, ``invalid_token`` on a bad token (403); ``phone``/``email``
  cells must be SHA-256 hex (raw values and MD5 are refused); a confirmed segment is
  ``processed`` at once (``few_data`` under 100 rows); modify_data needs the original columns.
- VK: the 401 body of ``vk_ads`` (``ERR_ACCESS_DENIED``); per-second and per-hour limits on
  users-list uploads reported as ``X-RateLimit-*`` headers, 429 past them; a size error
  (``not_enough_ids``/``too_many_ids``) has no line number; a list is ``ready`` at once; an
  optional ``/api/v2/oauth2/token.json`` client-credentials grant (``client_id``/
  ``client_secret``) issues the emulator's access token, as ``vk_ads`` does.
"""

from __future__ import annotations

import csv
import email.parser
import email.policy
import io
import itertools
import random
import re
import string
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

from ._base import EmulatorServer, Fault, Request, Response

JSON = "application/json; charset=UTF-8"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def multipart_fields(request: Request) -> dict[str, tuple[bytes, str | None]]:
    """``{name: (content bytes, filename or None)}`` of a multipart/form-data body."""
    ctype = request.header("Content-Type") or ""
    if "multipart/form-data" not in ctype.lower():
        return {}
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1") + request.body)
    out: dict[str, tuple[bytes, str | None]] = {}
    if not message.is_multipart():
        return out
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True) or b""
            out[str(name)] = (payload, part.get_filename())
    return out


def _bearer(request: Request, scheme: str = "bearer") -> str | None:
    given, _, token = (request.header("Authorization") or "").partition(" ")
    token = token.strip()
    return token if given.lower() == scheme and token else None


# ============================================================================================
# Meta
# ============================================================================================

META_HASHED_KEYS = frozenset({"EMAIL", "PHONE", "GEN", "DOBY", "DOBM", "DOBD", "LN", "FN", "FI",
                              "CT", "ST", "ZIP", "COUNTRY", "EMAIL_SHA256", "PHONE_SHA256"})
META_PLAIN_KEYS = frozenset({"EXTERN_ID", "MADID", "MOBILE_ADVERTISER_ID"})
META_MAX_ROWS = 10_000
META_FILE_SOURCES = frozenset({"USER_PROVIDED_ONLY", "PARTNER_PROVIDED_ONLY",
                               "BOTH_USER_AND_PARTNER_PROVIDED"})
_TRUE = frozenset({"1", "true", "True"})


def _params(request: Request) -> dict[str, Any]:
    """Graph takes parameters as a query, a form or a JSON body (later ones win)."""
    out: dict[str, Any] = dict(request.query_pairs)
    ctype = (request.header("Content-Type") or "").lower()
    if "json" in ctype and request.body:
        body = request.json()
        if not isinstance(body, dict):
            raise ValueError("the JSON body is not an object")
        out.update(body)
    elif "x-www-form-urlencoded" in ctype:
        out.update(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
    return out


class _GraphError(Exception):
    def __init__(self, message: str, code: int, subcode: int | None = None,
                 type_: str = "OAuthException", status: int = 400) -> None:
        super().__init__(message)
        self.message, self.code, self.subcode, self.type, self.status = (
            message, code, subcode, type_, status)


class MetaAudiencesEmulator(EmulatorServer):
    """``POST /{v}/act_<id>/customaudiences`` (create) and ``POST``/``DELETE
    /{v}/{ca_id}/users`` over audiences created that way or with ``create_audience``.
    ``ad_account_id`` (``act_<id>``) limits creation to that account; None allows any."""

    def __init__(self, *, access_token: str = "demo-meta-token", api_version: str = "v25.0",
                 ad_account_id: str | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(host, port)
        self.access_token = access_token
        self.api_version = api_version
        self.ad_account_id = ad_account_id
        self.created: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self.audiences: dict[str, dict[str, Any]] = {}
        # audience id -> {member key (tuple of (key, hash)): lookalike value or None}
        self._members: dict[str, dict[tuple, Any]] = {}
        self.sessions: dict[tuple[str, int], dict[str, Any]] = {}
        self.batches: list[dict[str, Any]] = []
        self._ids = itertools.count(23850000000000001)

    def create_audience(self, audience_id: str | None = None, *, value_based: bool = False,
                        name: str = "", **attrs: Any) -> str:
        """An empty audience, as if made in Ads Manager (tests' shortcut past the API)."""
        ca_id = str(audience_id or next(self._ids))
        with self._lock:
            self.audiences[ca_id] = {"id": ca_id, "name": name, "is_value_based": value_based,
                                     **attrs}
            self._members[ca_id] = {}
        return ca_id

    def members(self, audience_id: str) -> set[tuple]:
        """The audience's members: tuples of ``(schema key, hash)`` pairs (empty keys left
        out, ``LOOKALIKE_VALUE`` not part of the identity)."""
        with self._lock:
            return set(self._members.get(str(audience_id), {}))

    def values(self, audience_id: str) -> dict[tuple, Any]:
        with self._lock:
            return dict(self._members.get(str(audience_id), {}))

    # -- envelope ----------------------------------------------------------------------------
    @staticmethod
    def _trace_id() -> str:
        return "A" + "".join(random.choices(string.ascii_letters + string.digits, k=22))

    def _error(self, exc: _GraphError) -> Response:
        err: dict[str, Any] = {"message": exc.message, "type": exc.type, "code": exc.code}
        if exc.subcode is not None:
            err["error_subcode"] = exc.subcode
        err["fbtrace_id"] = self._trace_id()
        return Response(exc.status, {"error": err}, JSON)

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            return self._error(_GraphError(
                "(#80003) There have been too many calls to this ad-account. Wait a bit and "
                "try again.", int(fault.params.get("code", 80003)), 2446079))
        if fault.kind == "5xx":
            return self._error(_GraphError(
                "An unexpected error has occurred. Please retry your request later.", 2,
                status=int(fault.params.get("status", 500))))
        if fault.kind == "expired_token":
            return self._error(_GraphError(
                "Error validating access token: Session has expired.", 190, 463))
        raise AssertionError(fault.kind)  # pragma: no cover

    # -- routing -----------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        try:
            return Response(200, self._route(request), JSON)
        except _GraphError as exc:
            return self._error(exc)

    def _route(self, request: Request) -> dict[str, Any]:
        parts = [p for p in request.path.split("/") if p]
        if len(parts) != 3 or parts[0] != self.api_version or \
                parts[2] not in ("users", "customaudiences"):
            raise _GraphError("Unknown path components: " + request.path, 2500)
        token = _bearer(request) or request.get("access_token")
        if token != self.access_token:
            raise _GraphError("Invalid OAuth access token - Cannot parse access token", 190)
        if parts[2] == "customaudiences":
            return self._create(request, parts[1])
        if request.method not in ("POST", "DELETE"):
            raise _GraphError(f"Unsupported {request.method.lower()} request.", 100)
        ca_id = parts[1]
        with self._lock:
            audience = self.audiences.get(ca_id)
        if audience is None:
            raise _GraphError(
                f"Unsupported {request.method.lower()} request. Object with ID '{ca_id}' does "
                "not exist, cannot be loaded due to missing permissions, or does not support "
                "this operation.", 100, 33, "GraphMethodException")
        body = request.json() if request.body else {}
        if not isinstance(body, dict):
            raise _GraphError("(#100) The payload must be a JSON object", 100)
        return self._users(request.method, audience, body)

    def _create(self, request: Request, account: str) -> dict[str, Any]:
        """A customer-file custom audience in ``account`` (``act_<id>``)."""
        if request.method != "POST":
            raise _GraphError(f"Unsupported {request.method.lower()} request.", 100)
        if not re.fullmatch(r"act_\d+", account) or \
                (self.ad_account_id is not None and account != self.ad_account_id):
            raise _GraphError(f"Unsupported post request. Object with ID '{account}' does not "
                              "exist, cannot be loaded due to missing permissions, or does not "
                              "support this operation.", 100, 33, "GraphMethodException")
        try:
            params = _params(request)
        except ValueError as exc:
            raise _GraphError(f"(#100) {exc}", 100) from None
        if not str(params.get("name") or "").strip():
            raise _GraphError("(#100) The parameter name is required", 100)
        if params.get("subtype") != "CUSTOM":
            raise _GraphError("(#100) subtype must be CUSTOM for a customer file audience", 100)
        if params.get("customer_file_source") not in META_FILE_SOURCES:
            raise _GraphError("(#100) customer_file_source must be one of "
                              + ", ".join(sorted(META_FILE_SOURCES)), 100)
        value_based = str(params.get("is_value_based", "")) in _TRUE
        ca_id = self.create_audience(
            value_based=value_based, name=str(params["name"]), account=account,
            description=str(params.get("description") or ""), subtype="CUSTOM",
            customer_file_source=params["customer_file_source"])
        with self._lock:
            self.created.append({"id": ca_id, "account": account,
                                 **{k: v for k, v in params.items() if k != "access_token"}})
        return {"id": ca_id}

    def _users(self, method: str, audience: dict[str, Any], body: dict[str, Any]
               ) -> dict[str, Any]:
        payload = body.get("payload")
        if not isinstance(payload, dict):
            raise _GraphError("(#100) The parameter payload is required", 100)
        schema, data = payload.get("schema"), payload.get("data")
        if isinstance(schema, str):
            schema = [schema]
        if not isinstance(schema, list) or not schema or not isinstance(data, list):
            raise _GraphError("(#100) payload needs schema and data", 100)
        unknown = [k for k in schema if k not in META_HASHED_KEYS | META_PLAIN_KEYS
                   and k != "LOOKALIKE_VALUE"]
        if unknown:
            raise _GraphError(f"(#100) Invalid schema key: {unknown[0]}", 100)
        if "LOOKALIKE_VALUE" in schema and not audience["is_value_based"]:
            raise _GraphError("(#100) LOOKALIKE_VALUE is only allowed on value-based custom "
                              "audiences", 100, 1870090)
        if len(data) > META_MAX_ROWS:
            raise _GraphError(f"(#100) Too many users in one request: {len(data)} > "
                              f"{META_MAX_ROWS}", 100)
        session = body.get("session")
        session_id = self._check_session(audience["id"], session)
        valid: list[tuple[tuple, Any]] = []
        invalid: list[list[Any]] = []
        for row in data:
            member = self._member(schema, row)
            (invalid.append(row) if member is None else valid.append(member))
        with self._lock:
            members = self._members[audience["id"]]
            for key, value in valid:
                if method == "POST":
                    members[key] = value
                else:
                    members.pop(key, None)
            self.batches.append({"method": method, "audience_id": audience["id"],
                                 "schema": list(schema), "rows": len(data),
                                 "data": [list(r) for r in data],
                                 "session": dict(session) if isinstance(session, dict) else None,
                                 "invalid": len(invalid)})
        answer: dict[str, Any] = {"audience_id": audience["id"], "num_received": len(data),
                                  "num_invalid_entries": len(invalid),
                                  "invalid_entry_samples": {
                                      str(i): r for i, r in enumerate(invalid[:5])}}
        if session_id is not None:
            answer["session_id"] = str(session_id)
        return answer

    def _check_session(self, ca_id: str, session: Any) -> int | None:
        if session is None:
            return None
        if not isinstance(session, dict) or "session_id" not in session:
            raise _GraphError("(#100) session needs session_id", 100)
        sid, seq = int(session["session_id"]), int(session.get("batch_seq", 0))
        with self._lock:
            state = self.sessions.get((ca_id, sid))
            last = 0 if state is None else state["batch_seq"]
            if state is not None and state["closed"] and seq != last:
                raise _GraphError("Failed to update the custom audience: the session is "
                                  "already finished", 2650, 1870145)
            if seq not in (last, last + 1) or seq < 1:
                raise _GraphError("Failed to update the custom audience: first batch_seq was "
                                  "not detected", 2650, 1870147)
            self.sessions[(ca_id, sid)] = {"batch_seq": seq,
                                           "closed": bool(session.get("last_batch_flag"))}
        return sid

    @staticmethod
    def _member(schema: list[str], row: Any) -> tuple[tuple, Any] | None:
        if not isinstance(row, list) or len(row) != len(schema):
            return None
        key: list[tuple[str, str]] = []
        value = None
        for name, cell in zip(schema, row, strict=True):
            if name == "LOOKALIKE_VALUE":
                if isinstance(cell, bool) or not isinstance(cell, int | float) or cell < 0:
                    return None
                value = cell
            elif cell in ("", None):
                continue
            elif name in META_HASHED_KEYS and not HEX64.match(str(cell)):
                return None
            else:
                key.append((name, str(cell)))
        return (tuple(key), value) if key else None


# ============================================================================================
# Google Data Manager
# ============================================================================================

GOOGLE_MAX_MEMBERS = 10_000
_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                  404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                  503: "UNAVAILABLE"}
_IDENTIFIER_KINDS = ("emailAddress", "phoneNumber", "address")
_USER_LISTS = re.compile(r"^/v1/accountTypes/([A-Z_]+)/accounts/(\d+)/userLists$")
GOOGLE_UPLOAD_KEY_TYPES = frozenset({"CONTACT_ID", "MOBILE_ID", "USER_ID", "PAIR_ID",
                                     "PSEUDONYMOUS_ID"})


class _GoogleError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


class GoogleDataManagerEmulator(EmulatorServer):
    """``POST /v1/audienceMembers:ingest`` and ``:remove``, ``POST
    /v1/accountTypes/{type}/accounts/{id}/userLists`` (Data Manager API) and, with
    ``oauth_client=(client_id, client_secret, refresh_token)``, a ``POST /token`` refresh grant.
    ``user_lists`` names the lists that exist up front; None accepts any list id."""

    INGEST = "/v1/audienceMembers:ingest"
    REMOVE = "/v1/audienceMembers:remove"
    TOKEN = "/token"

    def __init__(self, *, access_token: str = "demo-google-token",
                 user_lists: tuple[str, ...] | None = None,
                 oauth_client: tuple[str, str, str] | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.access_token = access_token
        self.user_lists = None if user_lists is None else {str(u) for u in user_lists}
        self.oauth_client = oauth_client
        self.token_refreshes = 0
        self._lock = threading.RLock()
        self._members: dict[str, set[frozenset]] = {}
        self.batches: list[dict[str, Any]] = []
        self.created: list[dict[str, Any]] = []
        self.lists: dict[str, dict[str, Any]] = {}  # created lists by id
        self._ids = itertools.count(8_900_000_001)

    def members(self, list_id: str) -> set[frozenset]:
        """Members of a user list: frozensets of ``(kind, hash)`` identifier pairs."""
        with self._lock:
            return set(self._members.get(str(list_id), set()))

    def _error(self, exc: _GoogleError) -> Response:
        err: dict[str, Any] = {"code": exc.status, "message": exc.message,
                               "status": _GOOGLE_STATUS.get(exc.status, "UNKNOWN")}
        if exc.field:
            err["details"] = [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                               "fieldViolations": [{"field": exc.field,
                                                    "description": exc.message}]}]
        return Response(exc.status, {"error": err}, JSON)

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            return self._error(_GoogleError(429, "Quota exceeded for quota metric 'Requests' "
                                                 "of service 'datamanager.googleapis.com'."))
        if fault.kind == "5xx":
            status = int(fault.params.get("status", 500))
            return self._error(_GoogleError(status, "Internal error encountered."))
        if fault.kind == "expired_token":
            return self._error(_GoogleError(401, "Request had invalid authentication "
                                                 "credentials. Expected OAuth 2 access token."))
        raise AssertionError(fault.kind)  # pragma: no cover

    def handle(self, request: Request) -> Response:
        if request.path == self.TOKEN and self.oauth_client is not None:
            return self._token(request)
        try:
            lists = _USER_LISTS.match(request.path)
            if request.path not in (self.INGEST, self.REMOVE) and lists is None:
                raise _GoogleError(404, f"Method not found: {request.path}")
            if request.method != "POST":
                raise _GoogleError(404, f"Method not found: {request.method} {request.path}")
            if _bearer(request) != self.access_token:
                raise _GoogleError(401, "Request had invalid authentication credentials. "
                                        "Expected OAuth 2 access token, login cookie or other "
                                        "valid authentication credential.")
            body = request.json()
            if not isinstance(body, dict):
                raise _GoogleError(400, "Invalid JSON payload received.")
            if lists is not None:
                return Response(200, self._create_list(*lists.groups(), body, request), JSON)
            return Response(200, self._members_call(request.path == self.INGEST, body), JSON)
        except _GoogleError as exc:
            return self._error(exc)
        except ValueError:
            return self._error(_GoogleError(400, "Invalid JSON payload received."))

    def _token(self, request: Request) -> Response:
        """The OAuth refresh-token grant (form-encoded), answered with ``access_token``."""
        form = dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
        client_id, client_secret, refresh_token = self.oauth_client or ("", "", "")
        if form.get("grant_type") != "refresh_token":
            return Response(400, {"error": "unsupported_grant_type",
                                  "error_description": "Invalid grant_type"}, JSON)
        if (form.get("client_id"), form.get("client_secret")) != (client_id, client_secret):
            return Response(401, {"error": "invalid_client",
                                  "error_description": "The OAuth client was not found."}, JSON)
        if form.get("refresh_token") != refresh_token:
            return Response(400, {"error": "invalid_grant", "error_description": "Bad Request"},
                            JSON)
        with self._lock:
            self.token_refreshes += 1
        return Response(200, {"access_token": self.access_token, "expires_in": 3599,
                              "scope": "https://www.googleapis.com/auth/datamanager",
                              "token_type": "Bearer"}, JSON)

    def _create_list(self, account_type: str, account_id: str, body: dict[str, Any],
                     request: Request) -> dict[str, Any]:
        """``userLists.create``: a Customer Match list of ``account_id``, empty."""
        if not str(body.get("displayName") or "").strip():
            raise _GoogleError(400, "displayName is required.", "user_list.display_name")
        info = body.get("ingestedUserListInfo")
        keys = info.get("uploadKeyTypes") if isinstance(info, dict) else None
        if not isinstance(keys, list) or not keys or set(keys) - GOOGLE_UPLOAD_KEY_TYPES:
            raise _GoogleError(400, "ingestedUserListInfo.uploadKeyTypes must list upload key "
                                    "types such as CONTACT_ID.",
                               "user_list.ingested_user_list_info.upload_key_types")
        with self._lock:
            list_id = str(next(self._ids))
            user_list = {"name": f"accountTypes/{account_type}/accounts/{account_id}/userLists/"
                                 f"{list_id}",
                         "id": list_id, "displayName": body["displayName"],
                         "description": str(body.get("description") or ""),
                         "membershipStatus": "OPEN", "ingestedUserListInfo": info}
            self.lists[list_id] = {**user_list, "accountType": account_type,
                                   "accountId": account_id}
            if self.user_lists is not None:
                self.user_lists.add(list_id)
            self.created.append({"id": list_id, "accountType": account_type,
                                 "accountId": account_id,
                                 "loginAccount": request.header("login-account"),
                                 "body": body})
        return user_list

    def _members_call(self, ingest: bool, body: dict[str, Any]) -> dict[str, Any]:
        destinations = body.get("destinations")
        if not isinstance(destinations, list) or not destinations:
            raise _GoogleError(400, "Destinations are required.", "destinations")
        list_ids = []
        for i, dest in enumerate(destinations):
            if not isinstance(dest, dict) or not dest.get("productDestinationId") or not \
                    isinstance(dest.get("operatingAccount"), dict):
                raise _GoogleError(400, "A destination needs operatingAccount and "
                                        "productDestinationId.", f"destinations[{i}]")
            list_id = str(dest["productDestinationId"])
            owner = self.lists.get(list_id)
            wrong_account = owner is not None and (
                str(dest["operatingAccount"].get("accountId")), dest["operatingAccount"].get(
                    "accountType")) != (owner["accountId"], owner["accountType"])
            if wrong_account or (self.user_lists is not None and list_id not in self.user_lists):
                raise _GoogleError(400, f"User list {list_id} not found.",
                                   f"destinations[{i}].productDestinationId")
            list_ids.append(list_id)
        encoding = body.get("encoding")
        if encoding not in ("HEX", "BASE64"):
            raise _GoogleError(400, "encoding is required for UserData (HEX or BASE64).",
                               "encoding")
        members = body.get("audienceMembers")
        if not isinstance(members, list) or not members:
            raise _GoogleError(400, "audienceMembers are required.", "audience_members")
        if len(members) > GOOGLE_MAX_MEMBERS:
            raise _GoogleError(400, f"Too many audience members: {len(members)} > "
                                    f"{GOOGLE_MAX_MEMBERS}.", "audience_members")
        parsed = [self._member(i, m, encoding) for i, m in enumerate(members)]
        with self._lock:
            for list_id in list_ids:
                current = self._members.setdefault(list_id, set())
                if ingest:
                    current.update(parsed)
                else:
                    gone = set().union(*parsed)
                    current.difference_update({m for m in current if m & gone})
            self.batches.append({"method": "ingest" if ingest else "remove",
                                 "destinations": list_ids, "members": len(members),
                                 "audienceMembers": members, "encoding": encoding,
                                 "consent": body.get("consent")})
        return {"requestId": str(uuid.uuid4())}

    @staticmethod
    def _member(i: int, member: Any, encoding: str) -> frozenset:
        ids = member.get("userData", {}).get("userIdentifiers") if isinstance(member, dict) \
            else None
        where = f"audience_members[{i}].user_data.user_identifiers"
        if not isinstance(ids, list) or not ids:
            raise _GoogleError(400, "A member needs userData.userIdentifiers.", where)
        out = set()
        for j, ident in enumerate(ids):
            kinds = [k for k in _IDENTIFIER_KINDS if isinstance(ident, dict) and k in ident]
            if len(kinds) != 1 or len(ident) != 1:
                raise _GoogleError(400, "A UserIdentifier must hold exactly one of "
                                        "emailAddress, phoneNumber, address.", f"{where}[{j}]")
            kind = kinds[0]
            value = ident[kind]
            if kind != "address":
                ok = HEX64.match(str(value)) if encoding == "HEX" else \
                    re.fullmatch(r"[A-Za-z0-9+/]{43}=", str(value))
                if not ok:
                    raise _GoogleError(400, f"{kind} is not a SHA-256 hash in {encoding} "
                                            "encoding.", f"{where}[{j}].{kind}")
                out.add((kind, str(value)))
            else:
                out.add((kind, repr(sorted(value.items())) if isinstance(value, dict) else ""))
        return frozenset(out)


# ============================================================================================
# Yandex Audiences
# ============================================================================================

YANDEX_MIN_ROWS = 100
YANDEX_COLUMNS = frozenset({"external_id", "phone", "email", "gender", "birth_date", "city"})


class _YandexError(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


class YandexAudiencesEmulator(EmulatorServer):
    """CRM segments: upload_csv_file, confirm, modify_data (``Authorization: OAuth``)."""

    UPLOAD = "/v1/management/segments/upload_csv_file"
    _SEGMENT = re.compile(r"^/v1/management/segment/(\d+)/(confirm|modify_data)$")

    def __init__(self, *, oauth_token: str = "demo-yandex-token", host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(host, port)
        self.oauth_token = oauth_token
        self._lock = threading.RLock()
        self.segments: dict[int, dict[str, Any]] = {}
        self._members: dict[int, set[tuple]] = {}
        self._pending: dict[int, set[tuple]] = {}
        self.batches: list[dict[str, Any]] = []
        self._ids = itertools.count(21000001)

    def members(self, segment_id: int | str) -> set[tuple]:
        """Rows of a confirmed segment: tuples of its identifier cells in column order
        (``external_id`` left out)."""
        with self._lock:
            return set(self._members.get(int(segment_id), set()))

    def _error(self, exc: _YandexError) -> Response:
        return Response(exc.status, {"errors": [{"error_type": exc.error_type,
                                                  "message": exc.message}],
                                     "code": exc.status, "message": exc.message}, JSON)

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            return self._error(_YandexError(429, "quota_requests_by_uid",
                                            "Quota exceeded: too many requests"))
        if fault.kind == "5xx":
            return self._error(_YandexError(int(fault.params.get("status", 500)),
                                            "backend_error", "Internal error"))
        if fault.kind == "expired_token":
            return self._error(_YandexError(403, "invalid_token", "Invalid oauth_token"))
        raise AssertionError(fault.kind)  # pragma: no cover

    def handle(self, request: Request) -> Response:
        try:
            if _bearer(request, "oauth") != self.oauth_token:
                raise _YandexError(403, "invalid_token", "Invalid oauth_token")
            if request.method != "POST":
                raise _YandexError(405, "invalid_parameter", "Method not allowed")
            if request.path == self.UPLOAD:
                return Response(200, self._upload(request), JSON)
            match = self._SEGMENT.match(request.path)
            if match is None:
                raise _YandexError(404, "not_found", f"Unknown resource {request.path}")
            segment_id = int(match.group(1))
            with self._lock:
                if segment_id not in self.segments:
                    raise _YandexError(404, "not_found", f"Segment {segment_id} not found")
            if match.group(2) == "confirm":
                return Response(200, self._confirm(segment_id, request), JSON)
            return Response(200, self._modify(segment_id, request), JSON)
        except _YandexError as exc:
            return self._error(exc)

    def _file(self, request: Request) -> tuple[list[str], set[tuple], int]:
        fields = multipart_fields(request)
        if "file" not in fields:
            raise _YandexError(400, "invalid_parameter", "Multipart field 'file' is required")
        try:
            text = fields["file"][0].decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _YandexError(400, "invalid_file", "The file is not UTF-8") from None
        rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
        if not rows:
            raise _YandexError(400, "invalid_file", "The file is empty")
        header = [c.strip().lower() for c in rows[0]]
        if not {"phone", "email"} & set(header) or set(header) - YANDEX_COLUMNS:
            raise _YandexError(400, "invalid_file", "The first line must name the columns; "
                                                    "phone or email is required")
        ident_cols = [i for i, c in enumerate(header) if c in ("phone", "email")]
        members = set()
        for n, row in enumerate(rows[1:], start=2):
            if len(row) != len(header):
                raise _YandexError(400, "invalid_file", f"Line {n}: wrong number of columns")
            for i in ident_cols:
                cell = row[i].strip()
                if cell and not HEX64.match(cell):
                    kind = "MD5 is no longer accepted" if HEX32.match(cell) else \
                        "not a SHA-256 hash"
                    raise _YandexError(400, "invalid_file", f"Line {n}: {header[i]} is {kind}")
            members.add(tuple(row[i].strip() for i in ident_cols))
        return header, members, len(rows) - 1

    @staticmethod
    def _check_size(request: Request, count: int) -> None:
        if count < YANDEX_MIN_ROWS and (request.get("check_size") or "true").lower() != "false":
            raise _YandexError(400, "invalid_file",
                               f"The file has {count} rows; at least {YANDEX_MIN_ROWS} are "
                               "needed (check_size=false saves a smaller segment)")

    def _upload(self, request: Request) -> dict[str, Any]:
        header, members, count = self._file(request)
        self._check_size(request, count)
        with self._lock:
            segment_id = next(self._ids)
            segment = {"id": segment_id, "status": "uploaded", "type": "uploading",
                       "name": "", "has_guests": False, "item_quantity": count,
                       "columns": header}
            self.segments[segment_id] = segment
            self._pending[segment_id] = members
            self.batches.append({"method": "upload", "segment_id": segment_id, "rows": count,
                                 "members": set(members)})
            return {"segment": {k: v for k, v in segment.items() if k != "columns"}}

    def _confirm(self, segment_id: int, request: Request) -> dict[str, Any]:
        body = request.json() or {}
        seg = body.get("segment") if isinstance(body, dict) else None
        if not isinstance(seg, dict) or not seg.get("name"):
            raise _YandexError(400, "invalid_parameter", "segment.name is required")
        if seg.get("content_type") != "crm":
            raise _YandexError(400, "invalid_parameter", "content_type must be crm")
        if seg.get("hashed") is not True or seg.get("hashing_alg") != "SHA256":
            raise _YandexError(400, "invalid_parameter",
                               "Only SHA256-hashed CRM data is accepted")
        with self._lock:
            segment = self.segments[segment_id]
            if segment["status"] != "uploaded":
                raise _YandexError(400, "invalid_parameter", "Segment is already confirmed")
            members = self._pending.pop(segment_id)
            self._members[segment_id] = members
            segment.update(name=seg["name"], content_type="crm", hashed=True,
                           used_hashing_alg="SHA256",
                           status="processed" if len(members) >= YANDEX_MIN_ROWS else
                           "few_data", valid_unique_quantity=len(members))
            return {"segment": {k: v for k, v in segment.items() if k != "columns"}}

    def _modify(self, segment_id: int, request: Request) -> dict[str, Any]:
        kind = request.get("modification_type")
        if kind not in ("addition", "subtraction", "replace"):
            raise _YandexError(400, "invalid_parameter",
                               "modification_type must be addition, subtraction or replace")
        header, members, count = self._file(request)
        self._check_size(request, count)
        with self._lock:
            segment = self.segments[segment_id]
            if segment["status"] == "uploaded":
                raise _YandexError(400, "invalid_parameter", "Segment is not confirmed yet")
            if header != segment["columns"]:
                raise _YandexError(400, "invalid_file", "The file must have the same "
                                                        "structure as the original upload")
            current = self._members[segment_id]
            if kind == "addition":
                current |= members
            elif kind == "subtraction":
                current -= members
            else:
                current.clear()
                current |= members
            segment["valid_unique_quantity"] = len(current)
            self.batches.append({"method": kind, "segment_id": segment_id, "rows": count,
                                 "members": set(members)})
            return {"segment": {k: v for k, v in segment.items() if k != "columns"}}


# ============================================================================================
# VK Ads users lists
# ============================================================================================

VK_LISTS_PATH = "/api/v3/remarketing/users_lists.json"
VK_TOKEN_PATH = "/api/v2/oauth2/token.json"
_VK_ONE = re.compile(r"^/api/v3/remarketing/users_lists/(\d+)\.json$")
VK_MAX_LINES = 5_000_000
VK_MIN_BASE_LINES = 2_000
VK_MIN_DIFF_LINES = 25
_PHONE = re.compile(r"^\d{10,15}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class _VKError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body))
        self.status, self.body = status, body


def _vk_field_error(code: str, message: str, field: str = "file",
                    status: int = 400) -> _VKError:
    return _VKError(status, {"error": {"fields": {field: [{"code": code, "message": message}]}}})


class VKAudiencesEmulator(EmulatorServer):
    """``POST /api/v3/remarketing/users_lists.json`` (base and differential lists) and
    ``GET /api/v3/remarketing/users_lists/<id>.json``, with per-second and per-hour limits;
    with ``client_id``/``client_secret``, ``POST /api/v2/oauth2/token.json`` grants
    (client_credentials, refresh_token) that issue ``access_token``."""

    def __init__(self, *, access_token: str = "demo-vk-token", rate_limit_per_s: int = 10,
                 hourly_limit: int = 36_000, min_base_lines: int = VK_MIN_BASE_LINES,
                 min_diff_lines: int = VK_MIN_DIFF_LINES, client_id: str | None = None,
                 client_secret: str | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(host, port)
        self.access_token = access_token
        self.client = (client_id, client_secret) if client_id and client_secret else None
        self.token_grants: list[str] = []  # grant_type of every token issued
        self.limits = {"RPS": int(rate_limit_per_s), "Hourly": int(hourly_limit)}
        self.min_base_lines = int(min_base_lines)
        self.min_diff_lines = int(min_diff_lines)
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.RLock()
        self.lists: dict[int, dict[str, Any]] = {}
        self._members: dict[int, set[str]] = {}
        self.batches: list[dict[str, Any]] = []
        self.throttled = 0
        self._ids = itertools.count(2500001)

    def members(self, list_id: int | str) -> set[str]:
        with self._lock:
            return set(self._members.get(int(list_id), set()))

    def _rate(self) -> tuple[bool, dict[str, str]]:
        now = time.time()
        over = False
        headers: dict[str, str] = {}
        with self._lock:
            for kind, limit in self.limits.items():
                period = int(now) if kind == "RPS" else int(now // 3600)
                prev, count = self._counts.get(kind, (period, 0))
                count = (count if prev == period else 0) + 1
                self._counts[kind] = (period, count)
                over = over or count > limit
                headers[f"X-RateLimit-{kind}-Limit"] = str(limit)
                headers[f"X-RateLimit-{kind}-Remaining"] = str(max(limit - count, 0))
            if over:
                self.throttled += 1
        return over, headers

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            headers = {"X-RateLimit-RPS-Limit": str(self.limits["RPS"]),
                       "X-RateLimit-RPS-Remaining": "0"}
            if "retry_after" in fault.params:
                headers["Retry-After"] = str(int(fault.params["retry_after"]))
            return Response(429, b"", None, headers)
        if fault.kind == "5xx":
            return Response(int(fault.params.get("status", 500)),
                            {"error": {"code": "ERR_INTERNAL",
                                       "message": "Internal server error, retry later"}}, JSON)
        if fault.kind == "expired_token":
            return Response(401, {"error": {"code": "ERR_ACCESS_DENIED",
                                            "message": "Access token expired"}}, JSON)
        raise AssertionError(fault.kind)  # pragma: no cover

    def _token(self, request: Request) -> Response:
        """A client_credentials or refresh_token grant (form-encoded), as ``vk_ads`` answers."""
        form = dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
        if (form.get("client_id"), form.get("client_secret")) != self.client:
            return Response(401, {"error": {"code": "ERR_ACCESS_DENIED",
                                            "message": "Invalid client_id or client_secret"}},
                            JSON)
        grant = form.get("grant_type") or ""
        if grant not in ("client_credentials", "refresh_token"):
            return Response(400, {"error": {"code": "ERR_WRONG_PARAMETER",
                                            "message": f"Unsupported grant_type {grant!r}"}},
                            JSON)
        with self._lock:
            self.token_grants.append(grant)
        return Response(200, {"access_token": self.access_token, "token_type": "Bearer",
                              "expires_in": 86400, "refresh_token": "vk-refresh-" +
                              uuid.uuid4().hex}, JSON)

    def handle(self, request: Request) -> Response:
        if request.path == VK_TOKEN_PATH and request.method == "POST" and self.client:
            return self._token(request)
        if _bearer(request) != self.access_token:
            return Response(401, {"error": {"code": "ERR_ACCESS_DENIED",
                                            "message": "Invalid or expired access token"}}, JSON)
        over, headers = self._rate()
        if over:
            return Response(429, b"", None, headers)
        try:
            one = _VK_ONE.match(request.path)
            if one is not None and request.method == "GET":
                with self._lock:
                    item = self.lists.get(int(one.group(1)))
                if item is None:
                    raise _VKError(404, {"error": {"code": "not_found",
                                                   "message": "Users list not found"}})
                return Response(200, dict(item), JSON, headers)
            if request.path != VK_LISTS_PATH or request.method != "POST":
                raise _VKError(404, {"error": {"code": "ERR_WRONG_RESOURCE",
                                               "message": f"Unknown resource {request.path}"}})
            return Response(200, self._create(request), JSON, headers)
        except _VKError as exc:
            return Response(exc.status, exc.body, JSON, headers)

    def _create(self, request: Request) -> dict[str, Any]:
        fields = multipart_fields(request)
        if "file" not in fields:
            raise _vk_field_error("required", "This field is required")
        name = fields.get("name", (b"", None))[0].decode("utf-8").strip()
        if not name:
            raise _vk_field_error("required", "This field is required", "name")
        list_type = fields.get("type", (b"", None))[0].decode("utf-8").strip()
        if list_type not in ("phones", "emails", "vk", "ok"):
            raise _vk_field_error("unallowed_value", f"Unsupported type {list_type!r}", "type")
        base_raw = fields.get("base", (b"", None))[0].decode("utf-8").strip()
        base = int(base_raw) if re.fullmatch(r"[+-]?\d+", base_raw or "x") else None
        if base_raw and base is None:
            raise _vk_field_error("invalid_uint", "base must be an integer", "base")
        lines = [ln.strip() for ln in fields["file"][0].decode("utf-8").splitlines()
                 if ln.strip()]
        valid, problems = [], []
        for n, line in enumerate(lines, start=1):
            code = self._line_error(list_type, line)
            if code is None:
                valid.append(line)
            else:
                problems.append({"line_number": n, "line": line, "error_code": code})
        minimum = self.min_diff_lines if base else self.min_base_lines
        if len(lines) > VK_MAX_LINES:
            raise _vk_field_error("too_many_ids", f"At most {VK_MAX_LINES} lines are allowed")
        if len(valid) < minimum:
            if problems and not valid:
                raise _VKError(400, {"error": {"fields": {"file": [
                    {"line_number": p["line_number"], "line": p["line"],
                     "code": p["error_code"]} for p in problems[:10]]}}})
            kind = "differential list" if base else "list"
            raise _vk_field_error("not_enough_ids",
                                  f"{len(valid)} valid lines; a {kind} needs at least {minimum}")
        with self._lock:
            if base:
                target = self.lists.get(abs(base))
                if target is None:
                    raise _vk_field_error("not_found", f"Base list {abs(base)} not found",
                                          "base")
                if target["base"]:
                    raise _vk_field_error("unallowed_value", "A differential list cannot be "
                                                             "based on another one", "base")
                if target["type"] != list_type:
                    raise _vk_field_error("type_mismatch", "The type must match the base "
                                                           "list's type", "type")
            list_id = next(self._ids)
            item = {"id": list_id, "name": name, "status": "ready", "type": list_type,
                    "entries_count": len(lines), "ids_count": len(set(valid)),
                    "matched_ids_count": len(set(valid)), "base": base or 0,
                    "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "error": problems or None}
            self.lists[list_id] = item
            self._members[list_id] = set(valid)
            if base:
                target_members = self._members[abs(base)]
                if base > 0:
                    target_members |= set(valid)
                else:
                    target_members -= set(valid)
                self.lists[abs(base)]["ids_count"] = len(target_members)
            self.batches.append({"list_id": list_id, "name": name, "type": list_type,
                                 "base": base or 0, "lines": list(lines)})
            return dict(item)

    @staticmethod
    def _line_error(list_type: str, line: str) -> str | None:
        if HEX32.match(line.lower()):
            return None  # an MD5 of a phone or e-mail
        if list_type == "phones":
            return None if _PHONE.match(line) else "invalid_phone"
        if list_type == "emails":
            return None if _EMAIL.match(line) else "invalid_email"
        return None if line.isdigit() else "invalid_uint"
