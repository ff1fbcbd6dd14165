"""amoCRM write-back: segment tags on contacts, tasks for managers, leads in a pipeline.

API notes: ``activation_apis.md`` §1. Every call goes through an ``extractors.amocrm``
``AmoCRMSource``, so the writes share the extractor's token store (the rotating refresh token
is spent once, whoever refreshes), its 7 req/s limiter and its redaction.

Choices, each answering an amoCRM pitfall:

- Tags are changed with ``tags_to_add``/``tags_to_delete`` only, never ``_embedded.tags``:
  that field replaces a contact's whole tag set (pitfall 1), which would wipe the tags set by
  people, the do-not-contact tag among them.
- Bodies are arrays of at most ``max_batch`` (50) items: the documented maximum is unverified
  (250?) and 50 is the recommended size (§1.a).
- Creates (tasks, leads) are not idempotent in amoCRM (no key, §1.b): they are sent once
  (``idempotent=False``), so a dropped connection or a 5xx raises instead of creating a second
  task. The caller looks at what exists (``open_tasks``, ``find_leads``) before trying again.
  The raised ``ApiError`` carries ``created``: the ids of the earlier batches that did land.
- A 400 ``validation-errors`` answer raises ``ApiError`` naming the failing items (input
  position, ``request_id``, field path and amoCRM's detail); the rest of that request was
  not applied.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from extractors.amocrm import AmoCRMSource, account_address, strip_links
from extractors.http import ApiError, HttpOptions, iter_hal_pages, parse_error_body
from extractors.state import TokenStore

from . import UploadResult, chunks
from .env import _get, _state_dir

log = logging.getLogger("voronka.audiences")

SOURCE = "amocrm"
TAGS_PATH = "/api/v4/contacts/tags"
CONTACTS_PATH = "/api/v4/contacts"
TASKS_PATH = "/api/v4/tasks"
LEADS_PATH = "/api/v4/leads"
PIPELINES_PATH = "/api/v4/leads/pipelines"
USERS_PATH = "/api/v4/users"
PAGE_LIMIT = 250  # the maximum page size of every list read here
IDS_PER_QUERY = 50  # entity ids per task query, so the URL stays short
TASK_ENTITY_TYPES = ("leads", "contacts", "companies", "customers")
RATE_LIMIT_PER_S = 6.5  # as orchestration.resources.AmoCRMResource: one shared limiter
_MAX_NAMED = 5  # failing items named in one error message


def amocrm_account(env: Mapping[str, str]) -> tuple[str, str]:
    """(base URL, subdomain) from AMOCRM_BASE_URL / AMOCRM_SUBDOMAIN of ``env``; either one
    is enough (as for the extractor: ``extractors.amocrm.account_address``)."""
    return account_address(_get(env, "AMOCRM_BASE_URL") or "",
                           _get(env, "AMOCRM_SUBDOMAIN") or "")


def _item_label(index: int, request_id: str | None, what: str) -> str:
    label = f"{what} #{index}"
    return f"{label} (request_id {request_id})" if request_id is not None else label


class AmoCRMWriteClient:
    """Writes to amoCRM through an extractors.amocrm.AmoCRMSource (same token store, refresh,
    rate limiter and redaction as the extractor)."""

    max_batch = 50

    def __init__(self, source: AmoCRMSource) -> None:
        self.source = source
        self.http = source.client

    @classmethod
    def from_env(cls, env: Mapping[str, str], *,
                 http_options: HttpOptions | None = None) -> AmoCRMWriteClient:
        """The amoCRM account of the extractor's variables (AMOCRM_BASE_URL or _SUBDOMAIN,
        _CLIENT_ID, _CLIENT_SECRET, _REDIRECT_URI, _REFRESH_TOKEN, _LONG_LIVED_TOKEN) and its
        token store (``VORONKA_STATE_DIR``/amocrm_<subdomain>_token.json): one refresh-token
        chain for reads and writes. A missing variable is a ValueError naming it."""
        base_url, subdomain = amocrm_account(env)
        client_id = _get(env, "AMOCRM_CLIENT_ID")
        secret = _get(env, "AMOCRM_CLIENT_SECRET")
        long_lived = _get(env, "AMOCRM_LONG_LIVED_TOKEN")
        if not long_lived:
            missing = [n for n, v in (("AMOCRM_CLIENT_ID", client_id),
                                      ("AMOCRM_CLIENT_SECRET", secret)) if not v]
            if missing:
                raise ValueError(f"amoCRM OAuth needs {' and '.join(missing)} "
                                 "(or set AMOCRM_LONG_LIVED_TOKEN)")
        store_path: Path = _state_dir(env) / f"amocrm_{subdomain}_token.json"
        return cls(AmoCRMSource(
            base_url, account=subdomain, client_id=client_id, client_secret=secret,
            redirect_uri=_get(env, "AMOCRM_REDIRECT_URI"),
            token_store=TokenStore(store_path),
            initial_refresh_token=_get(env, "AMOCRM_REFRESH_TOKEN"),
            long_lived_token=long_lived, rate_limit_per_s=RATE_LIMIT_PER_S,
            http_options=http_options,
        ))

    def __repr__(self) -> str:  # never a token
        return f"AmoCRMWriteClient(base_url={self.source.base_url!r})"

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> AmoCRMWriteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads --------------------------------------------------------------------------------
    def _list(self, path: str, params: Mapping[str, Any], key: str) -> Iterator[dict]:
        """Every item of a HAL list, all pages, without ``_links``; none on 204."""
        for page in iter_hal_pages(self.http, path, dict(params), key):
            for item in page.items:
                if isinstance(item, dict):
                    yield strip_links(item)

    def _find_tag(self, name: str) -> int | None:
        for tag in self._list(TAGS_PATH, {"filter[name]": name, "limit": PAGE_LIMIT}, "tags"):
            if tag.get("name") == name and tag.get("id") is not None:
                return int(tag["id"])
        return None

    def open_tasks(self, entity_type: str, entity_ids: Sequence[int]) -> list[dict]:
        """The open tasks of these entities (all pages), for dedupe before ``create_tasks``:
        amoCRM has no idempotency key (§1.b)."""
        if entity_type not in TASK_ENTITY_TYPES:
            raise ValueError(f"entity_type must be one of {', '.join(TASK_ENTITY_TYPES)}, "
                             f"got {entity_type!r}")
        out: list[dict] = []
        ids = list(dict.fromkeys(int(i) for i in entity_ids))
        for part in chunks(ids, IDS_PER_QUERY):
            params: dict[str, Any] = {"filter[entity_type]": entity_type,
                                      "filter[is_completed]": 0, "limit": PAGE_LIMIT}
            # indexed keys (as the PHP SDK sends arrays) survive the next-page links
            params.update({f"filter[entity_id][{n}]": i for n, i in enumerate(part)})
            out += self._list(TASKS_PATH, params, "tasks")
        return out

    def find_leads(self, query: str) -> list[dict]:
        """Leads matching amoCRM's full-text ``query`` (all pages, with their contacts)."""
        if not query.strip():
            raise ValueError("find_leads needs a non-empty query")
        return list(self._list(LEADS_PATH, {"query": query, "with": "contacts",
                                            "limit": PAGE_LIMIT}, "leads"))

    def pipelines(self) -> list[dict]:
        """``[{id, name, is_main, statuses: [{id, name, sort, type}]}]``, stages by sort."""
        out = []
        for p in self._list(PIPELINES_PATH, {}, "pipelines"):
            statuses = [{"id": s.get("id"), "name": s.get("name"), "sort": s.get("sort"),
                         "type": s.get("type")}
                        for s in (p.get("_embedded") or {}).get("statuses") or []]
            statuses.sort(key=lambda s: (int(s["sort"] or 0), int(s["id"] or 0)))
            out.append({"id": p.get("id"), "name": p.get("name"),
                        "is_main": bool(p.get("is_main")), "statuses": statuses})
        return out

    def users(self) -> list[dict]:
        """``[{id, name}]`` of the account's users (who can be made responsible)."""
        return [{"id": u.get("id"), "name": u.get("name")}
                for u in self._list(USERS_PATH, {"limit": PAGE_LIMIT}, "users")]

    # -- writes -------------------------------------------------------------------------------
    def ensure_contact_tag(self, name: str) -> int:
        """The id of the contacts' tag ``name``, created when absent. A create that may have
        landed (dropped connection, 5xx) or lost a race (``NotUnique``) is looked up again
        instead of being re-sent."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a tag needs a non-empty name")
        found = self._find_tag(name)
        if found is not None:
            return found
        try:
            body = self._write("POST", TAGS_PATH, [{"name": name, "request_id": "0"}],
                               what="tag", idempotent=False)
        except ApiError as exc:
            maybe_landed = exc.status is None or exc.status >= 500
            if not (maybe_landed or exc.error_code == "NotUnique"):
                raise
            found = self._find_tag(name)
            if found is None:
                raise
            return found
        tags = (body.get("_embedded") or {}).get("tags") or []
        if not tags or tags[0].get("id") is None:
            raise self._unexpected(TAGS_PATH, "the tag create answered no id")
        return int(tags[0]["id"])

    def update_contact_tags(self, contact_ids: Sequence[int], *, add: Sequence[str] = (),
                            delete: Sequence[str] = ()) -> UploadResult:
        """Add and remove tags (by name) on contacts, leaving their other tags alone; PATCHes
        of at most ``max_batch`` contacts. A name amoCRM does not know is created by
        ``tags_to_add`` (unverified: call ``ensure_contact_tag`` first to be sure). Re-sending
        is harmless (adding a present tag or deleting an absent one changes nothing), so a
        dropped connection is retried."""
        add, delete = list(add), list(delete)
        if not add and not delete:
            raise ValueError("update_contact_tags needs tags to add or delete")
        for name in (*add, *delete):
            if not isinstance(name, str) or not name.strip():
                raise ValueError("tag names must be non-empty strings")
        if set(add) & set(delete):
            raise ValueError(f"tags both added and deleted: {sorted(set(add) & set(delete))}")
        ids = list(dict.fromkeys(int(i) for i in contact_ids))
        operation = "update" if add and delete else ("add" if add else "remove")
        result = UploadResult(audience_id=",".join(add or delete), operation=operation)
        for part in chunks(ids, self.max_batch):
            items: list[dict[str, Any]] = []
            for cid in part:
                item: dict[str, Any] = {"id": cid}
                if add:
                    item["tags_to_add"] = [{"name": n} for n in add]
                if delete:
                    item["tags_to_delete"] = [{"name": n} for n in delete]
                items.append(item)
            body = self._write("PATCH", CONTACTS_PATH, items, what="contact",
                               idempotent=True, labels=[f"contact {cid}" for cid in part])
            answered = {str(c.get("id")) for c in (body.get("_embedded") or {}).get(
                "contacts") or [] if isinstance(c, dict)}
            missing = [cid for cid in part if str(cid) not in answered]
            if missing:
                raise self._unexpected(CONTACTS_PATH, f"the PATCH answered without contacts "
                                       f"{missing[:_MAX_NAMED]}")
            result.rows += len(part)
            result.batches.append(len(part))
            result.responses.append(body)
        return result

    def create_tasks(self, tasks: Sequence[Mapping[str, Any]]) -> list[int]:
        """Create tasks (amoCRM task bodies: text, complete_till, entity_id, entity_type,
        responsible_user_id, task_type_id, request_id); the new ids in input order."""
        return self._create(TASKS_PATH, "tasks", "task", tasks)

    def create_leads(self, leads: Sequence[Mapping[str, Any]]) -> list[int]:
        """Create leads (amoCRM lead bodies: name, price, pipeline_id, status_id,
        responsible_user_id, ``_embedded.contacts``, request_id); the ids in input order."""
        return self._create(LEADS_PATH, "leads", "lead", leads)

    # -- plumbing -----------------------------------------------------------------------------
    def _create(self, path: str, key: str, what: str,
                bodies: Sequence[Mapping[str, Any]]) -> list[int]:
        """POST ``bodies`` in batches, once each (not idempotent); every item carries a
        ``request_id`` (its input position unless it has one) to match the answers."""
        items: list[dict[str, Any]] = []
        for n, body in enumerate(bodies):
            if not isinstance(body, Mapping):
                raise TypeError(f"{what} #{n} is not a mapping")
            item = dict(body)
            own = item.get("request_id")
            item["request_id"] = str(n if own is None or own == "" else own)
            items.append(item)
        rids = [i["request_id"] for i in items]
        if len(set(rids)) != len(rids):
            raise ValueError(f"{what} request_id values must be unique")
        created: list[int] = []
        for start in range(0, len(items), self.max_batch):
            part = items[start:start + self.max_batch]
            try:
                body = self._write("POST", path, part, what=what, idempotent=False,
                                   offset=start)
                created += self._created_ids(path, key, what, part, body)
            except ApiError as exc:
                exc.created = list(created)  # type: ignore[attr-defined]
                if created:
                    log.warning("amoCRM %s: %d of %d %ss created before the failure",
                                path, len(created), len(items), what)
                raise
        return created

    def _created_ids(self, path: str, key: str, what: str, part: list[dict[str, Any]],
                     body: dict[str, Any]) -> list[int]:
        """The new ids in the order of ``part``: by echoed ``request_id``, else by position."""
        answered = [a for a in (body.get("_embedded") or {}).get(key) or []
                    if isinstance(a, dict) and a.get("id") is not None]
        by_rid = {str(a["request_id"]): int(a["id"]) for a in answered
                  if a.get("request_id") is not None}
        if all(item["request_id"] in by_rid for item in part):
            return [by_rid[item["request_id"]] for item in part]
        if len(answered) == len(part):
            return [int(a["id"]) for a in answered]
        raise self._unexpected(path, f"the create answered {len(answered)} ids for "
                               f"{len(part)} {what}s; they may exist: check before resending")

    def _write(self, method: str, path: str, items: list[dict[str, Any]], *, what: str,
               idempotent: bool, offset: int = 0,
               labels: Sequence[str] | None = None) -> dict[str, Any]:
        """One write call; a 400 raises naming the failing items, any other failure raises
        from the shared layer (429 retried there, and 5xx/drops only when ``idempotent``)."""
        resp = self.http.request(method, path, json=items, ok_statuses=(400,),
                                 idempotent=idempotent)
        if resp.status_code == 400:
            raise self._validation_error(resp, items, what, offset, labels)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise self._unexpected(path, f"{method} answered HTTP {resp.status_code} without "
                                   "a JSON object")
        return body

    def _validation_error(self, resp: requests.Response, items: list[dict[str, Any]],
                          what: str, offset: int, labels: Sequence[str] | None) -> ApiError:
        """``ApiError`` naming each failing item: input position, request_id, path, detail."""
        # parsed before redaction: its JSON pattern for OAuth codes would mask amoCRM's error
        # codes (``"code": "NotSupportedChoice"``); the message is redacted once assembled
        text = resp.content[:65_536].decode("utf-8", errors="replace")
        info = parse_error_body(text)
        failures = (info.fields or {}).get("validation-errors") if info.fields else None
        by_rid = {str(item.get("request_id", n)): n for n, item in enumerate(items)}
        parts: list[str] = []
        for failure in failures if isinstance(failures, list) else []:
            if not isinstance(failure, dict):
                continue
            rid = None if failure.get("request_id") is None else str(failure["request_id"])
            index = by_rid.get(rid) if rid is not None else None
            if labels is not None and index is not None:
                label = f"{labels[index]} (item {index + offset})"
            elif index is not None:
                label = _item_label(index + offset, rid, what)
            else:
                label = f"{what} with request_id {rid}"
            problems = "; ".join(
                " ".join(str(e[k]) for k in ("path", "code", "detail") if e.get(k))
                for e in failure.get("errors") or [] if isinstance(e, dict))
            parts.append(f"{label}: {problems or 'invalid'}")
        if len(parts) > _MAX_NAMED:
            parts = [*parts[:_MAX_NAMED], f"and {len(parts) - _MAX_NAMED} more"]
        message = "; ".join(parts) or info.message or "HTTP 400 Bad Request"
        redact = self.http.redactor
        return ApiError(400, self.http.safe_url(resp.url or self.http.base_url),
                        redact(text)[:500], SOURCE,
                        message=redact(f"amoCRM rejected the {what}s: {message}"),
                        error_code=redact(info.code) if info.code else None)

    def _unexpected(self, path: str, what: str) -> ApiError:
        return ApiError(200, self.http.safe_url(self.http.url_for(path)), "", SOURCE,
                        message=what)
