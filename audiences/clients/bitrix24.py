"""Bitrix24 write-back: a segment flag on contacts, to-dos for the managers, deals in a
pipeline (activation_apis.md §2).

Every call goes through ``extractors.bitrix24.Bitrix24Source``, so the writes share the
extractor's webhook/OAuth handling (token renewal on ``expired_token``), the portal's leaky
bucket (a batch is one request), the 503 ``QUERY_LIMIT_EXCEEDED`` / 429
``OPERATION_TIME_LIMIT`` handling and the redaction of the webhook code.

Why it looks the way it does:

- Bitrix24 has no idempotency keys. Creates (to-dos, deals) go out with ``idempotent=False``:
  after a dropped connection or a 5xx the portal may have acted, so they are never re-sent
  blindly; the caller looks up what exists (``todos`` by owner, ``deals_by_origin`` by the
  ``ORIGIN_ID`` it set) before trying again. Updates (the flag) are safe to repeat.
- Writes go in ``batch`` calls of at most 50 commands (``halt=0``): one bad contact does not
  stop the others, and each command's own error comes back in ``result_error``.
- The flag is a boolean contact user field ``UF_CRM_<CODE>``; it is set with ``"1"``/``"0"``
  (the boolean type's stored values: the reference leaves ``Y``/``N`` support unverified).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from extractors.bitrix24 import OAUTH_URL, Bitrix24Source, php_query
from extractors.http import ApiError, HttpOptions
from extractors.state import TokenStore
from voronka import settings

from . import UploadResult, chunks

log = logging.getLogger("voronka.audiences")

UF_PREFIX = "UF_CRM_"
UF_MAX_LEN = 50  # the final name, prefix included
# the fields of a to-do activity (crm.activity.list) that the actions read back
ACTIVITY_SELECT = ("ID", "OWNER_TYPE_ID", "OWNER_ID", "PROVIDER_ID", "SUBJECT", "DESCRIPTION",
                   "RESPONSIBLE_ID", "DEADLINE", "COMPLETED", "CREATED")
DEAL_SELECT = ("ID", "TITLE", "CATEGORY_ID", "STAGE_ID", "CONTACT_ID", "ASSIGNED_BY_ID",
               "OPPORTUNITY", "ORIGINATOR_ID", "ORIGIN_ID", "DATE_CREATE")
MAX_ERRORS_SHOWN = 10  # contact ids named in one error message


def _get(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value; unset and blank are the same (an empty line in ``.env``)."""
    value = (env.get(name) or "").strip()
    return value or None


def _state_dir(env: Mapping[str, str]) -> Path:
    """``VORONKA_STATE_DIR`` of ``env`` (relative to the repository), else the settings' own:
    the same token store the extractor renews, so both share one rotating refresh token."""
    value = _get(env, "VORONKA_STATE_DIR")
    if value is None:
        return settings.state_dir()
    path = Path(value).expanduser()
    return path if path.is_absolute() else settings.REPO_ROOT / path


def flag_field_name(code: str) -> str:
    """``UF_CRM_<CODE>`` for a flag code: upper-cased, ``A-Z0-9_`` only, at most 50 chars with
    the prefix (the portal's rules; checked here so a bad code fails before any call)."""
    text = str(code).strip().upper()
    if text.startswith(UF_PREFIX):
        text = text[len(UF_PREFIX):]
    if not re.fullmatch(r"[A-Z0-9_]+", text):
        raise ValueError(f"a Bitrix24 user-field code may contain only A-Z, 0-9 and _: {code!r}")
    name = UF_PREFIX + text
    if len(name) > UF_MAX_LEN:
        raise ValueError(f"Bitrix24 user-field name {name} is longer than {UF_MAX_LEN} "
                         "characters")
    return name


def _plain(value: Any) -> Any:
    """A value as a batch command's query string carries it (booleans as Y/N, dates ISO)."""
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class Bitrix24WriteClient:
    """Writes to Bitrix24 through an extractors.bitrix24.Bitrix24Source (same webhook/OAuth,
    leaky bucket, 503/429 handling and redaction as the extractor)."""

    max_batch = 50

    def __init__(self, source: Bitrix24Source) -> None:
        self.api = source

    def __repr__(self) -> str:  # never the webhook URL
        return f"Bitrix24WriteClient(account={self.api.account!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str], *,
                 http_options: HttpOptions | None = None) -> Bitrix24WriteClient:
        """The portal of ``orchestration.resources.Bitrix24Resource`` (same ``BITRIX24_*``
        variables and token store; duplicated here so this module needs no Dagster):
        ``BITRIX24_WEBHOOK_URL``, or ``BITRIX24_PORTAL_URL`` + ``BITRIX24_CLIENT_ID`` +
        ``BITRIX24_CLIENT_SECRET`` (+ ``BITRIX24_REFRESH_TOKEN``, ``BITRIX24_OAUTH_URL``);
        optional ``BITRIX24_ACCOUNT``, ``BITRIX24_RATE_LIMIT_PER_S``. A missing variable is a
        ValueError naming it, never a value."""
        webhook = _get(env, "BITRIX24_WEBHOOK_URL")
        portal = webhook or _get(env, "BITRIX24_PORTAL_URL")
        if portal is None:
            raise ValueError("Bitrix24 writes need BITRIX24_WEBHOOK_URL (or BITRIX24_PORTAL_URL, "
                             "BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET) (not set)")
        parts = urlsplit(portal)
        account = _get(env, "BITRIX24_ACCOUNT") or parts.hostname or ""
        if not account:
            raise ValueError("BITRIX24_ACCOUNT is not set and the portal URL names no host")
        rate = float(_get(env, "BITRIX24_RATE_LIMIT_PER_S") or 2.0)
        if webhook:
            return cls(Bitrix24Source(f"{parts.scheme}://{parts.netloc}", account=account,
                                      webhook_url=webhook, rate_limit_per_s=rate,
                                      http_options=http_options))
        missing = [n for n in ("BITRIX24_CLIENT_ID", "BITRIX24_CLIENT_SECRET") if not _get(env, n)]
        if missing:
            raise ValueError(f"Bitrix24 OAuth needs {' and '.join(missing)} (not set)")
        return cls(Bitrix24Source(
            portal,
            account=account,
            client_id=_get(env, "BITRIX24_CLIENT_ID"),
            client_secret=_get(env, "BITRIX24_CLIENT_SECRET"),
            token_store=TokenStore(_state_dir(env) / f"bitrix24_{account}_token.json"),
            initial_refresh_token=_get(env, "BITRIX24_REFRESH_TOKEN"),
            oauth_url=_get(env, "BITRIX24_OAUTH_URL") or OAUTH_URL,
            rate_limit_per_s=rate,
            http_options=http_options,
        ))

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> Bitrix24WriteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------
    def _url(self, method: str) -> str:
        return self.api.client.safe_url(self.api.client.url_for(f"{method}.json"))

    def _list_all(self, method: str, params: dict[str, Any],
                  items_key: str | None = None) -> list[dict[str, Any]]:
        """Every row of a list method (50 per page, ``start``/``next``)."""
        rows: list[dict[str, Any]] = []
        start = 0
        while True:
            data = self.api.call(method, {**params, "start": start})
            result = data.get("result")
            page = result.get(items_key) if items_key and isinstance(result, dict) else result
            if page in (None, {}, ""):
                page = []
            if not isinstance(page, list):
                raise ApiError(200, self._url(method), "", "bitrix24",
                               message=f"{method}: list result is not an array")
            rows.extend(page)
            nxt = data.get("next")
            if nxt is None or not page:
                return rows
            start = int(nxt)

    def _command_error(self, method: str, label: str, error: Any) -> ApiError:
        """One batch command's error, naming the item (an id, never personal data)."""
        err = error if isinstance(error, dict) else {"error": str(error)}
        code = str(err.get("error") or "")
        text = self.api.redactor(str(err.get("error_description") or "")).strip()
        detail = ": ".join(p for p in (code, text) if p) or "error"
        return ApiError(200, self._url("batch"), self.api.redactor(str(err))[:500], "bitrix24",
                        error_code=code or None, message=f"{method} for {label} failed: {detail}")

    def _batches(self, method: str, bodies: Sequence[Mapping[str, Any]], labels: Sequence[str],
                 *, idempotent: bool) -> tuple[list[Any], list[int], list[Any]]:
        """Run ``method`` once per body in batches of ``max_batch`` (``halt=0``): (the result
        or ``ApiError`` per body in input order, commands per batch, the batches' results)."""
        outcomes: list[Any] = []
        sizes: list[int] = []
        responses: list[Any] = []
        for offset in range(0, len(bodies), self.max_batch):
            chunk = bodies[offset:offset + self.max_batch]
            keys = [f"c{offset + i}" for i in range(len(chunk))]
            cmds = {k: f"{method}?{php_query(_plain(body))}"
                    for k, body in zip(keys, chunk, strict=True)}
            out = self.api.batch(cmds, idempotent=idempotent)
            sizes.append(len(cmds))
            responses.append(out["result"])
            for key, label in zip(keys, labels[offset:offset + self.max_batch], strict=True):
                if key in out["result_error"]:
                    outcomes.append(self._command_error(method, label, out["result_error"][key]))
                elif key in out["result"]:
                    outcomes.append(out["result"][key])
                else:
                    outcomes.append(self._command_error(method, label,
                                                        {"error_description": "no result"}))
            log.info("Bitrix24 %s: batch of %d %s commands, %d failed", self.api.account,
                     len(cmds), method,
                     sum(isinstance(o, ApiError) for o in outcomes[offset:]))
        return outcomes, sizes, responses

    # -- the segment flag ---------------------------------------------------------------------
    def _userfield(self, name: str) -> dict[str, Any] | None:
        rows = self._list_all("crm.contact.userfield.list", {"filter": {"FIELD_NAME": name}})
        return next((r for r in rows if r.get("FIELD_NAME") == name), None)

    @staticmethod
    def _check_boolean(field: dict[str, Any], name: str) -> str:
        if field.get("USER_TYPE_ID") != "boolean":
            raise ValueError(f"Bitrix24 contact field {name} exists but is of type "
                             f"{field.get('USER_TYPE_ID')!r}, not boolean: choose another code")
        return name

    def ensure_contact_flag(self, code: str, label: str) -> str:
        """The boolean contact user field ``UF_CRM_<CODE>``, created when missing; returns its
        name. A create whose answer was lost (or that raced another run) is looked up again
        rather than re-sent."""
        name = flag_field_name(code)
        field = self._userfield(name)
        if field is not None:
            return self._check_boolean(field, name)
        fields = {"FIELD_NAME": name[len(UF_PREFIX):], "USER_TYPE_ID": "boolean",
                  "LABEL": label, "EDIT_FORM_LABEL": label, "LIST_COLUMN_LABEL": label,
                  "LIST_FILTER_LABEL": label, "MULTIPLE": "N", "MANDATORY": "N",
                  "SHOW_FILTER": "I", "SETTINGS": {"DEFAULT_VALUE": 0, "DISPLAY": "CHECKBOX"}}
        try:
            self.api.call("crm.contact.userfield.add", {"fields": fields}, idempotent=False)
        except ApiError:
            field = self._userfield(name)
            if field is None:
                raise
            return self._check_boolean(field, name)
        log.info("Bitrix24 %s: contact user field %s created", self.api.account, name)
        return name

    def set_contact_flag(self, contact_ids: Sequence[int], field_name: str,
                         value: bool) -> UploadResult:
        """Set (or clear) the flag on contacts: ``crm.contact.update`` in batches of 50, only
        that field. Every batch runs; then any contact that failed raises one ``ApiError``
        naming the contact ids (the others are set)."""
        if not field_name.startswith(UF_PREFIX):
            raise ValueError(f"not a Bitrix24 contact user field: {field_name!r}")
        ids = list(dict.fromkeys(int(c) for c in contact_ids))
        bodies = [{"ID": cid, "FIELDS": {field_name: "1" if value else "0"},
                   "PARAMS": {"REGISTER_SONET_EVENT": "N", "REGISTER_HISTORY_EVENT": "N"}}
                  for cid in ids]
        outcomes, sizes, responses = self._batches(
            "crm.contact.update", bodies, [f"contact {cid}" for cid in ids], idempotent=True)
        result = UploadResult(audience_id=field_name, operation="add" if value else "remove",
                              rows=len(ids), batches=sizes, responses=responses)
        failed = [(cid, o) for cid, o in zip(ids, outcomes, strict=True)
                  if isinstance(o, ApiError)]
        if failed:
            shown = "; ".join(str(err.detail) for _, err in failed[:MAX_ERRORS_SHOWN])
            more = (f" (and {len(failed) - MAX_ERRORS_SHOWN} more)"
                    if len(failed) > MAX_ERRORS_SHOWN else "")
            first = failed[0][1]
            named = ", ".join(str(c) for c, _ in failed[:MAX_ERRORS_SHOWN])
            raise ApiError(first.status, first.url, first.body_excerpt, "bitrix24",
                           error_code=first.error_code,
                           message=f"{field_name} not set on {len(failed)} of {len(ids)} "
                           f"contacts (contact ids {named}{more}): {shown}")
        return result

    # -- to-dos -------------------------------------------------------------------------------
    def todos(self, owner_type_id: int, owner_ids: Sequence[int], *,
              open_only: bool = True) -> list[dict]:
        """The activities on these owners (``crm.activity.list``; open ones only by default):
        what a run checks before adding a to-do, since Bitrix24 has no idempotency keys."""
        rows: list[dict] = []
        for chunk in chunks(list(dict.fromkeys(int(i) for i in owner_ids)), self.max_batch):
            filters: dict[str, Any] = {"OWNER_TYPE_ID": int(owner_type_id),
                                       "OWNER_ID": list(chunk)}
            if open_only:
                filters["COMPLETED"] = "N"
            rows += self._list_all("crm.activity.list", {"filter": filters,
                                                         "select": list(ACTIVITY_SELECT),
                                                         "order": {"ID": "ASC"}})
        return rows

    def add_todos(self, todos: Sequence[Mapping[str, Any]]) -> list[int | ApiError]:
        """``crm.activity.todo.add`` per mapping (``ownerTypeId``, ``ownerId``, ``deadline``,
        ``title``, ``description``, ``responsibleId``, ...), one batch per 50, never re-sent:
        the new id or that command's error, aligned with the input. A whole-call failure
        (including a lost answer) raises ``ApiError``."""
        bodies = [dict(t) for t in todos]
        labels = [f"to-do #{i} (owner {b.get('ownerTypeId')}:{b.get('ownerId')})"
                  for i, b in enumerate(bodies)]
        outcomes, _, _ = self._batches("crm.activity.todo.add", bodies, labels,
                                       idempotent=False)
        out: list[int | ApiError] = []
        for label, outcome in zip(labels, outcomes, strict=True):
            if isinstance(outcome, ApiError):
                out.append(outcome)
            elif isinstance(outcome, dict) and str(outcome.get("id", "")).isdigit():
                out.append(int(outcome["id"]))
            else:
                out.append(self._command_error("crm.activity.todo.add", label,
                                               {"error_description": "answer has no id"}))
        return out

    # -- deals --------------------------------------------------------------------------------
    def deals_by_origin(self, origin_ids: Sequence[str]) -> list[dict]:
        """Deals whose ``ORIGIN_ID`` is one of ``origin_ids`` (the dedupe key a run sets)."""
        rows: list[dict] = []
        for chunk in chunks(list(dict.fromkeys(str(o) for o in origin_ids)), self.max_batch):
            rows += self._list_all("crm.deal.list", {"filter": {"ORIGIN_ID": list(chunk)},
                                                     "select": list(DEAL_SELECT),
                                                     "order": {"ID": "ASC"}})
        return rows

    def add_deals(self, deals: Sequence[Mapping[str, Any]]) -> list[int | ApiError]:
        """``crm.deal.add`` per mapping of deal fields (``TITLE``, ``CATEGORY_ID``,
        ``STAGE_ID``, ``CONTACT_ID``, ``ASSIGNED_BY_ID``, ``ORIGINATOR_ID``, ``ORIGIN_ID``,
        ...), like ``add_todos``."""
        bodies = [{"fields": dict(d), "params": {"REGISTER_SONET_EVENT": "N"}} for d in deals]
        labels = [f"deal #{i}" + (f" (ORIGIN_ID {d['ORIGIN_ID']})" if d.get("ORIGIN_ID") else "")
                  for i, d in enumerate(deals)]
        outcomes, _, _ = self._batches("crm.deal.add", bodies, labels, idempotent=False)
        out: list[int | ApiError] = []
        for label, outcome in zip(labels, outcomes, strict=True):
            if isinstance(outcome, ApiError):
                out.append(outcome)
            elif str(outcome).isdigit():
                out.append(int(outcome))
            else:
                out.append(self._command_error("crm.deal.add", label,
                                               {"error_description": "answer has no id"}))
        return out

    def deal_categories(self) -> list[dict]:
        """``[{id, name}]`` of the deal pipelines, the default one (0) included."""
        rows = self._list_all("crm.category.list", {"entityTypeId": 2}, items_key="categories")
        return [{"id": int(r["id"]), "name": str(r.get("name") or "")} for r in rows]

    def deal_stages(self, category_id: int) -> list[dict]:
        """``[{id, name, sort, semantics}]`` of one pipeline's stages by sort (``semantics``
        P = in progress, S = won, F = lost)."""
        cat = int(category_id)
        entity_id = "DEAL_STAGE" if cat == 0 else f"DEAL_STAGE_{cat}"
        rows = self._list_all("crm.status.list", {"filter": {"ENTITY_ID": entity_id},
                                                  "order": {"SORT": "ASC"}})
        stages = [{"id": str(r["STATUS_ID"]), "name": str(r.get("NAME") or ""),
                   "sort": int(r.get("SORT") or 0),
                   "semantics": str(r.get("SEMANTICS") or "P")} for r in rows]
        return sorted(stages, key=lambda s: s["sort"])

    def users(self) -> list[dict]:
        """``[{id, name, active}]`` of the portal's users (``user.get``)."""
        rows = self._list_all("user.get", {"sort": "ID", "order": "ASC"})
        out = []
        for r in rows:
            name = " ".join(str(r.get(k) or "").strip() for k in ("NAME", "LAST_NAME")).strip()
            active = r.get("ACTIVE")
            out.append({"id": int(r["ID"]), "name": name,
                        "active": active in (True, "Y", "1", "true", 1)})
        return out
