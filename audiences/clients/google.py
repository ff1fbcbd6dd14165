"""Google Customer Match through the Data Manager API (ad_apis.md §B2).

``POST /v1/accountTypes/{type}/accounts/{id}/userLists`` creates a Customer Match list
(``create_user_list``; its ``id`` is the ``productDestinationId`` of later calls).
``POST /v1/audienceMembers:ingest`` and ``POST /v1/audienceMembers:remove`` with
``destinations`` (the user list is ``productDestinationId``), at most 10,000
``audienceMembers`` per request, ``encoding`` (HEX) and request-level ``consent``. OAuth bearer
token in the ``Authorization`` header (scope ``.../auth/datamanager``); getting the token is the
caller's business (a service account or a refresh-token flow).

A row is one person: ``{"emailAddress": hex, "phoneNumber": hex}`` (each value a string or a
list of strings; ``email``/``phone`` are accepted as aliases) or an API-shaped
``{"userData": {"userIdentifiers": [...]}}`` passed through as is. Each ``UserIdentifier``
holds exactly one of ``emailAddress``/``phoneNumber``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from extractors.http import HttpOptions

from . import AudienceClientBase, Token, UploadResult, chunks

SOURCE = "google_data_manager"
MAX_MEMBERS_PER_CALL = 10_000
INGEST_PATH = "/v1/audienceMembers:ingest"
REMOVE_PATH = "/v1/audienceMembers:remove"
CONSENT_GRANTED = {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}
# hashed e-mails and phones: the list's members are matched on contact data
UPLOAD_KEY_TYPES = ("CONTACT_ID",)
_KEYS = {"emailAddress": "emailAddress", "email": "emailAddress",
         "phoneNumber": "phoneNumber", "phone": "phoneNumber"}


def audience_member(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``AudienceMember`` for one row (see the module docstring)."""
    if "userData" in row:
        return dict(row)
    identifiers: list[dict[str, str]] = []
    for key, value in row.items():
        kind = _KEYS.get(key)
        if kind is None:
            raise ValueError(f"unknown identifier {key!r}; expected one of {sorted(_KEYS)}")
        values = [value] if isinstance(value, str) else list(value or ())
        identifiers += [{kind: v} for v in values if v]
    if not identifiers:
        raise ValueError("a member needs at least one identifier")
    return {"userData": {"userIdentifiers": identifiers}}


def user_list_id(answer: Any) -> str | None:
    """The ``id`` of a ``UserList``, else the last part of its resource ``name``
    (``accountTypes/GOOGLE_ADS/accounts/123/userLists/456``)."""
    if not isinstance(answer, dict):
        return None
    if answer.get("id"):
        return str(answer["id"])
    name = str(answer.get("name") or "")
    head, _, tail = name.rpartition("/userLists/")
    return tail if head and tail else None


class GoogleAudienceClient(AudienceClientBase):
    """Ingests and removes hashed members of Customer Match lists."""

    source = SOURCE
    max_batch = MAX_MEMBERS_PER_CALL

    def __init__(self, base_url: str = "https://datamanager.googleapis.com", token: Token = "",
                 *, operating_account_id: str, login_account_id: str | None = None,
                 account_type: str = "GOOGLE_ADS", consent: Mapping[str, str] | None = None,
                 encoding: str = "HEX", max_batch: int = MAX_MEMBERS_PER_CALL,
                 rate_limit_per_s: float | None = 5.0,
                 http_options: HttpOptions | None = None) -> None:
        if not 1 <= max_batch <= MAX_MEMBERS_PER_CALL:
            raise ValueError(f"max_batch must be 1..{MAX_MEMBERS_PER_CALL} (Data Manager limit)")
        if encoding not in ("HEX", "BASE64"):
            raise ValueError("encoding must be HEX or BASE64")
        super().__init__(base_url, token, rate_limit_per_s=rate_limit_per_s,
                         http_options=http_options)
        self.operating_account_id = str(operating_account_id)
        self.login_account_id = str(login_account_id) if login_account_id else None
        self.account_type = account_type
        self.consent = dict(consent or CONSENT_GRANTED)
        self.encoding = encoding
        self.max_batch = max_batch

    def destination(self, audience_id: str) -> dict[str, Any]:
        dest: dict[str, Any] = {
            "operatingAccount": {"accountType": self.account_type,
                                 "accountId": self.operating_account_id},
            "productDestinationId": str(audience_id),
        }
        if self.login_account_id:
            dest["loginAccount"] = {"accountType": self.account_type,
                                    "accountId": self.login_account_id}
        return dest

    def account_name(self, account_id: str) -> str:
        return f"accountTypes/{self.account_type}/accounts/{account_id}"

    def create_user_list(self, name: str, description: str = "") -> str:
        """Create an empty Customer Match list under the operating account; return its id.

        Going through a manager account, the ``login-account`` header names it."""
        path = f"/v1/{self.account_name(self.operating_account_id)}/userLists"
        body: dict[str, Any] = {"displayName": name,
                                "ingestedUserListInfo": {"uploadKeyTypes": list(UPLOAD_KEY_TYPES)}}
        if description:
            body["description"] = description
        headers = ({"login-account": self.account_name(self.login_account_id)}
                   if self.login_account_id else None)
        answer = self._call("POST", path, json=body, headers=headers)
        list_id = user_list_id(answer)
        if not list_id:
            raise self._unexpected(path, "the user list was created without an id in the answer")
        return list_id

    def add(self, audience_id: str, rows: Sequence[Mapping[str, Any]]) -> UploadResult:
        return self._send(INGEST_PATH, "add", audience_id, rows)

    def remove(self, audience_id: str, rows: Sequence[Mapping[str, Any]]) -> UploadResult:
        return self._send(REMOVE_PATH, "remove", audience_id, rows)

    def _send(self, path: str, operation: str, audience_id: str,
              rows: Sequence[Mapping[str, Any]]) -> UploadResult:
        members = [audience_member(r) for r in rows]
        result = UploadResult(str(audience_id), operation, len(members))
        for batch in chunks(members, self.max_batch):
            body: dict[str, Any] = {"destinations": [self.destination(audience_id)],
                                    "audienceMembers": list(batch),
                                    "encoding": self.encoding}
            if operation == "add":
                body["consent"] = self.consent
            answer = self._call("POST", path, json=body)
            result.batches.append(len(batch))
            result.responses.append(answer)
        return result
