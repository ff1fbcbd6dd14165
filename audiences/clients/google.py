"""Google Customer Match through the Data Manager API (ad_apis.md §B2).

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

from . import AudienceClientBase, UploadResult, chunks

SOURCE = "google_data_manager"
MAX_MEMBERS_PER_CALL = 10_000
INGEST_PATH = "/v1/audienceMembers:ingest"
REMOVE_PATH = "/v1/audienceMembers:remove"
CONSENT_GRANTED = {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}
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


class GoogleAudienceClient(AudienceClientBase):
    """Ingests and removes hashed members of Customer Match lists."""

    source = SOURCE
    max_batch = MAX_MEMBERS_PER_CALL

    def __init__(self, base_url: str = "https://datamanager.googleapis.com", token: str = "",
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
