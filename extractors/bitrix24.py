"""Bitrix24 REST source (CRM): users, statuses, deal categories, leads, deals, contacts and
stage history.

API notes: docs reference ``crm_apis.md`` §2 (https://apidocs.bitrix24.com/).

Design choices, each answering a Bitrix24 gotcha:

- **Auth**: an incoming webhook (``https://{portal}/rest/{user_id}/{code}/``; the code is a
  secret inside the URL, so it is registered with the redactor and never printed), or OAuth 2.0
  with ``auth=<access_token>`` in the body. The access token is renewed **only** when the portal
  answers 401 ``expired_token`` (the docs warn that apps renewing on a timer get blocked); every
  renewal returns a new refresh token, which is saved atomically through ``TokenStore`` under
  its lock *before* the new access token is used. ``client_secret`` goes only to the OAuth
  server (``oauth_url``), never to the portal.
- **Rate limit**: the portal's leaky bucket (2 req/s drain, burst 50 on standard plans) is
  mirrored client-side by the shared layer's ``LeakyBucketLimiter`` (``bucket_for``: one per
  portal, shared by every entity), kept a little below the server's burst so a normal run
  never earns a 503. A 503 ``QUERY_LIMIT_EXCEEDED`` anyway (another app on the same IP) marks
  our bucket full and retries with growing delays; 429 ``OPERATION_TIME_LIMIT`` waits until
  ``time.operating_reset_at``.
- **Paging**: 50 rows per call, fixed. Full loads use the documented fast-export pattern
  (``order[ID]=ASC``, ``filter[>ID]=last``, ``start=-1``: no count), chaining ``batch_pages``
  pages per HTTP request through ``batch`` with ``$result[pK][49][ID]`` references. Batch
  results are read in command order and stop at the first short page; any other command in
  ``result_error`` is raised naming the command. Incremental windows use ``start``/``next``
  (and ``batch`` for the remaining offsets once ``total`` is known).
- **Incremental**: leads/deals/contacts by ``filter[>DATE_MODIFY] = cursor - overlap_s`` (ISO
  with the portal's offset, as documented); the cursor never passes the portal's start time
  of the scan (``_capped``), so rows edited after being read land next run (issue 12 item 1);
  stage history (append-only) by ``>ID`` per entity type (1 = lead, 2 = deal: separate id
  sequences, so the cursor is ``{"1": id, "2": id}`` JSON).
- **Payloads** are kept as received (strings for the legacy ``crm.*.list`` methods). Stage
  history rows get the request fact ``_entityTypeId`` (the row itself does not say whether it is a
  lead or a deal row) and ``record_id`` ``"{entityTypeId}:{ID}"``.
- ``select`` lists ``*`` and ``UF_*`` plus the multifields ``PHONE`` and ``EMAIL`` (leads and
  contacts): a mask never selects multifields.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from extractors.http import (
    ApiError,
    AuthorizationError,
    HttpClient,
    HttpOptions,
    Page,
    Redactor,
    bucket_for,
    describe_error_body,
    error_code_of,
)
from extractors.state import TokenSet, TokenStore
from warehouse.records import RawRecord

log = logging.getLogger("voronka.extractors")

SOURCE = "bitrix24"
OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"
PAGE_SIZE = 50  # fixed by Bitrix24
MAX_BATCH = 50
OPERATING_MAX_WAIT_S = 11 * 60  # operating budget: ten one-minute buckets
STAGEHISTORY_TYPES = (1, 2)  # lead, deal


@dataclass(frozen=True)
class EntitySpec:
    method: str
    mode: str  # "full" (start/next), "modified" (DATE_MODIFY cursor), "stagehistory", "status"
    select: tuple[str, ...] = ()
    id_field: str = "ID"
    updated_field: str | None = None
    params: tuple[tuple[str, Any], ...] = ()


ENTITY_SPECS: dict[str, EntitySpec] = {
    "users": EntitySpec("user.get", "full", params=(("sort", "ID"), ("order", "ASC"))),
    "statuses": EntitySpec("crm.status.list", "status",
                           params=(("order", {"ENTITY_ID": "ASC", "SORT": "ASC"}),)),
    "categories": EntitySpec("crm.category.list", "full", id_field="id",
                             params=(("entityTypeId", 2),)),
    "leads": EntitySpec("crm.lead.list", "modified", ("*", "UF_*", "PHONE", "EMAIL"),
                        updated_field="DATE_MODIFY"),
    "deals": EntitySpec("crm.deal.list", "modified", ("*", "UF_*"), updated_field="DATE_MODIFY"),
    "contacts": EntitySpec("crm.contact.list", "modified", ("*", "UF_*", "PHONE", "EMAIL"),
                           updated_field="DATE_MODIFY"),
    "stagehistory": EntitySpec("crm.stagehistory.list", "stagehistory",
                               updated_field="CREATED_TIME"),
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def parse_b24_datetime(value: Any) -> datetime | None:
    """ISO 8601 with offset (``2026-01-02T09:15:07+03:00``) → naive UTC; None if unparseable."""
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace(" ", "T", 1))
    except ValueError:
        return None
    if parsed.tzinfo is None:  # a bare value cannot be placed in time; keep it as is
        return parsed
    return parsed.astimezone(UTC).replace(tzinfo=None)


def _date_start(data: dict[str, Any]) -> str | None:
    """When the portal started answering (``time.date_start``: ISO with its offset)."""
    block = data.get("time")
    value = block.get("date_start") if isinstance(block, dict) else None
    return str(value) if value and parse_b24_datetime(value) is not None else None


def _capped(best: datetime | None, best_raw: str | None, scan_start: str | None) -> str | None:
    """The cursor: the newest ``DATE_MODIFY`` read, but never past the scan's start.

    A row read early and edited later is not read again in that run (lists go in ID order);
    its new ``DATE_MODIFY`` is after the scan started. A long run can also read a row edited
    hours later, so a cursor at that row minus the overlap would pass the early edit for good.
    Stopping at the scan's start (the portal's clock) makes the next run read every such edit.
    """
    start = parse_b24_datetime(scan_start)
    if best is None or start is None or best <= start:
        return best_raw
    return scan_start


def php_query(params: dict[str, Any]) -> str:
    """PHP ``http_build_query`` for one batch command; ``$result[...]`` references stay as is."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}[{k}]", v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(f"{prefix}[]", v)
        else:
            pairs.append((prefix, "" if value is None else str(value)))

    for key, value in params.items():
        walk(str(key), value)
    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='$[]')}" for k, v in pairs)


def _as_dict(value: Any) -> dict[str, Any]:
    """Batch sections are PHP arrays: an empty one comes back as ``[]``."""
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------------------------
# the source
# --------------------------------------------------------------------------------------------
class Bitrix24Source:
    """Pages of ``RawRecord`` for each Bitrix24 entity; see the module docstring."""

    name = SOURCE
    ENTITIES = ("users", "statuses", "categories", "leads", "deals", "contacts", "stagehistory")

    def __init__(
        self,
        base_url: str,
        *,
        account: str,
        webhook_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        token_store: TokenStore | None = None,
        initial_refresh_token: str | None = None,
        oauth_url: str = OAUTH_URL,
        rate_limit_per_s: float = 2.0,
        burst: int = 50,
        # 25 pages (1,250 rows) per request: the stage history of 10x the demo (~700 pages)
        # fits in the portal's 50-request burst instead of waiting at 2 req/s once it is spent
        batch_pages: int = 25,
        overlap_s: int = 3600,
        http_options: HttpOptions | None = None,
    ) -> None:
        if webhook_url is None:
            missing = [n for n, v in (("client_id", client_id), ("client_secret", client_secret),
                                      ("token_store", token_store)) if not v]
            if missing:
                raise ValueError("Bitrix24 OAuth needs " + ", ".join(missing)
                                 + " (or pass webhook_url)")
        if not 1 <= batch_pages <= MAX_BATCH:
            raise ValueError(f"batch_pages must be between 1 and {MAX_BATCH}")
        self.base_url = base_url.rstrip("/")
        self.account = account
        self.webhook = webhook_url is not None
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_store = token_store
        self.initial_refresh_token = initial_refresh_token
        self.oauth_url = oauth_url
        self.rate_limit_per_s = rate_limit_per_s
        self.batch_pages = batch_pages
        self.overlap_s = int(overlap_s)
        self._tokens: TokenSet | None = None
        self.options = options = http_options or HttpOptions()
        self._sleep = options.sleep
        self.redactor = Redactor([client_secret, initial_refresh_token])
        if webhook_url is not None:
            api_base = webhook_url.rstrip("/")
            parts = [p for p in urlsplit(api_base).path.split("/") if p]
            if len(parts) < 3 or parts[-3] != "rest":
                raise ValueError("webhook_url must look like https://{portal}/rest/{user_id}/"
                                 "{code}/")
            self.redactor.add(parts[-1])  # the webhook code is a password
        else:
            api_base = self.base_url + "/rest"
        # the shared bucket of the portal; HttpClient registers the redactor with the
        # urllib3 log filter (the webhook code is in every request line's path)
        self.limiter = bucket_for(f"bitrix24:{urlsplit(api_base).netloc}", rate_limit_per_s,
                                  burst)
        self.client = HttpClient(api_base, limiter=self.limiter, redact=self.redactor,
                                 source=SOURCE, headers={"Accept": "application/json"},
                                 **options.client_kwargs())
        self.server_started: str | None = None  # time.date_start of the last answer
        self.oauth = HttpClient(oauth_url, redact=self.redactor, source=SOURCE,
                                headers={"Accept": "application/json"},
                                **options.client_kwargs())

    def __repr__(self) -> str:
        return f"Bitrix24Source(base_url={self.base_url!r}, account={self.account!r})"

    # -- auth ---------------------------------------------------------------------------------

    def access_token(self) -> str:
        """The current access token: the one in memory or in the store; renewed only when
        there is none (expiry is learnt from the portal's ``expired_token``)."""
        if self._tokens is None or not self._tokens.access_token:
            store = self.token_store
            assert store is not None
            stored = store.load()
            if stored is not None and stored.access_token:
                for t in (stored.access_token, stored.refresh_token):
                    self.redactor.add(t)
                self._tokens = stored
            else:
                self._refresh(stale_access=None)
        assert self._tokens is not None and self._tokens.access_token
        return self._tokens.access_token

    def _refresh(self, *, stale_access: str | None) -> TokenSet:
        """Renew under the store's lock; reuse a pair another worker obtained meanwhile."""
        store = self.token_store
        assert store is not None
        with store.lock():
            stored = store.load()
            if stored is not None:
                for t in (stored.access_token, stored.refresh_token):
                    self.redactor.add(t)
                if stored.access_token and stored.access_token != stale_access:
                    self._tokens = stored
                    return stored
            refresh_token = (stored.refresh_token if stored else None) or (
                self.initial_refresh_token)
            if not refresh_token:
                raise AuthorizationError(
                    None, self.oauth.safe_url(self.oauth_url), "", SOURCE,
                    message=f"no Bitrix24 refresh token: the token store {store.path} is empty "
                    "and no initial refresh token was given; authorise the app first",
                )
            params = {"grant_type": "refresh_token", "client_id": self.client_id,
                      "client_secret": self.client_secret, "refresh_token": refresh_token}
            try:
                resp = self.oauth.get(self.oauth_url, params=params, authenticate=False)
            except ApiError as exc:
                if exc.status in (400, 401, 403):
                    raise AuthorizationError(
                        exc.status, exc.url, exc.body_excerpt, SOURCE, error_code=exc.error_code,
                        message=(
                            "Bitrix24 refused the refresh token (already used, revoked or older "
                            "than 180 days) or the client credentials: re-authorise the app and "
                            f"store the new refresh token in {store.path} ({exc.detail})"
                        ),
                    ) from None
                raise
            data = resp.json()
            access, refresh = data.get("access_token"), data.get("refresh_token")
            if not access or not refresh:
                raise AuthorizationError(resp.status_code, self.oauth.safe_url(self.oauth_url),
                                         "", SOURCE,
                                         message="token response lacks access/refresh token")
            self.redactor.add(access)
            self.redactor.add(refresh)
            expires = data.get("expires")
            expires_at = float(expires) if expires else time.time() + float(
                data.get("expires_in") or 3600)
            tokens = TokenSet(access, refresh, expires_at)
            store.save(tokens)  # persist the rotated refresh token BEFORE using the new access
            self._tokens = tokens
            log.info("Bitrix24 %s: access token renewed; new refresh token saved to %s",
                     self.account, store.path)
            return tokens

    # -- calls --------------------------------------------------------------------------------

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             idempotent: bool = True) -> dict[str, Any]:
        """One REST call (POST, JSON body) → the decoded envelope; handles 401/429/503.

        ``idempotent=False`` (a create: a to-do, a deal) is never re-sent once the portal may
        have acted on it (a dropped connection, a bad 2xx body, a 5xx other than the rate
        limit's ``QUERY_LIMIT_EXCEEDED``): it raises ``ApiError`` and the caller looks up what
        exists. The rate limit (503/429) and an expired token are still retried: the portal
        refused those requests before doing anything."""
        refreshed = False
        limit_retries = op_waits = 0
        while True:
            body = dict(params or {})
            if not self.webhook:
                body["auth"] = self.access_token()
            resp = self.client.post(f"{method}.json", json=body, ok_statuses=(401, 429, 503),
                                    idempotent=idempotent)
            shown = self.client.safe_url(self.client.url_for(f"{method}.json"))
            status = resp.status_code
            if 200 <= status < 300:
                try:
                    data = resp.json()
                except ValueError:
                    raise ApiError(status, shown, self.client._excerpt(resp), SOURCE,
                                   message="response is not JSON") from None
                if not isinstance(data, dict) or "result" not in data:
                    raise ApiError(status, shown, self.client._excerpt(resp), SOURCE,
                                   message="response has no 'result'")
                self.server_started = _date_start(data) or self.server_started
                return data
            excerpt = self.client._excerpt(resp)
            code = error_code_of(excerpt)
            if status == 401:
                if code == "expired_token" and not self.webhook and not refreshed:
                    refreshed = True
                    log.info("Bitrix24 %s: %s -> 401 expired_token; renewing the access token",
                             self.account, shown)
                    stale = self._tokens.access_token if self._tokens else None
                    self._refresh(stale_access=stale)
                    continue
                hint = ("the incoming webhook was rejected (wrong user id or code, deleted, "
                        "expired or regenerated by an admin): create a new webhook"
                        if self.webhook else "the access token was rejected: re-authorise "
                        "the app")
                raise AuthorizationError(401, shown, excerpt, SOURCE, error_code=code,
                                         message=f"{describe_error_body(excerpt)} ({hint})")
            # a bare 503 (a proxy's page) may follow a create that was applied: not re-sent
            if status == 503 and (code == "QUERY_LIMIT_EXCEEDED"
                                  or (code is None and idempotent)):
                if limit_retries >= self.options.max_retries:
                    raise ApiError(status, shown, excerpt, SOURCE, error_code=code,
                                   attempts=limit_retries + 1)
                delay = max(self.client.backoff(limit_retries), 1.0 / self.rate_limit_per_s)
                limit_retries += 1
                self.limiter.saturate()
                self.limiter.pause(delay, sleep=self._sleep)
                log.warning("Bitrix24 %s: %s -> 503 %s; the portal's request bucket is full, "
                            "retry %d/%d in %.2fs", self.account, shown, code or "",
                            limit_retries, self.options.max_retries, delay)
                continue
            if status == 429 and code == "OPERATION_TIME_LIMIT":
                wait = self._operating_wait(resp, op_waits)
                if wait > max(self.options.max_retry_after, OPERATING_MAX_WAIT_S) or (
                        op_waits >= self.options.max_retries):
                    raise ApiError(status, shown, excerpt, SOURCE, error_code=code,
                                   attempts=op_waits + 1,
                                   message=f"{describe_error_body(excerpt)} (method {method} "
                                   f"blocked; reset in {wait:.0f}s)")
                op_waits += 1
                log.warning("Bitrix24 %s: %s is blocked by its operating-time budget; waiting "
                            "%.1fs until operating_reset_at", self.account, method, wait)
                self._sleep(wait)
                continue
            raise ApiError(status, shown, excerpt, SOURCE, error_code=code,
                           message=f"{describe_error_body(excerpt) or 'error'}"
                           + (" (blocked by Bitrix24 support)" if code == "OVERLOAD_LIMIT"
                              else ""))

    def _operating_wait(self, resp: Any, attempt: int) -> float:
        try:
            reset_at = float(((resp.json() or {}).get("time") or {})["operating_reset_at"])
        except (ValueError, TypeError, KeyError, AttributeError):
            return max(60.0, self.client.backoff(attempt))
        return max(1.0, reset_at - time.time() + 1.0)

    def batch(self, cmds: dict[str, str], *, halt: bool = False,
              idempotent: bool = True) -> dict[str, Any]:
        """Run a ``batch``; returns ``{"result", "result_error", "result_total",
        "result_next", "result_time"}`` as dicts (empty PHP arrays normalised).
        ``idempotent=False`` when any command creates something (see ``call``)."""
        if len(cmds) > MAX_BATCH:
            raise ValueError(f"a Bitrix24 batch holds at most {MAX_BATCH} commands")
        data = self.call("batch", {"halt": 1 if halt else 0, "cmd": cmds},
                         idempotent=idempotent)
        res = _as_dict(data.get("result"))
        return {k: _as_dict(res.get(k)) for k in
                ("result", "result_error", "result_total", "result_next", "result_time")}

    def _batch_error(self, key: str, cmd: str, error: Any) -> ApiError:
        err = error if isinstance(error, dict) else {"error": str(error)}
        code = str(err.get("error") or "")
        method = cmd.partition("?")[0]
        return ApiError(
            200, self.client.safe_url(self.client.url_for("batch.json")),
            self.redactor(json.dumps(err, ensure_ascii=False))[:500], SOURCE, error_code=code,
            message=f"batch command {key!r} ({method}) failed: {code}: "
            f"{err.get('error_description') or ''}".rstrip(": "),
        )

    @staticmethod
    def _time_limited(error: Any) -> bool:
        return isinstance(error, dict) and error.get("error") == "OPERATION_TIME_LIMIT"

    def _wait_for_operating_reset(self, out: dict[str, Any], method: str) -> None:
        """A sub-call of ``method`` was blocked inside a batch (which itself answered 200):
        sleep until the newest ``operating_reset_at`` the earlier sub-calls reported."""
        resets = [float(t["operating_reset_at"]) for t in out["result_time"].values()
                  if isinstance(t, dict) and t.get("operating_reset_at")]
        if not resets:
            return  # the next direct call learns the reset time from its 429
        wait = max(1.0, max(resets) - time.time() + 1.0)
        if wait > max(self.options.max_retry_after, OPERATING_MAX_WAIT_S):
            raise ApiError(429, self.client.safe_url(self.client.url_for("batch.json")), "",
                           SOURCE, error_code="OPERATION_TIME_LIMIT",
                           message=f"{method} blocked by its operating-time budget for "
                           f"{wait:.0f}s")
        log.warning("Bitrix24 %s: %s is blocked by its operating-time budget inside a batch; "
                    "waiting %.1fs until operating_reset_at", self.account, method, wait)
        self._sleep(wait)

    # -- paging strategies ---------------------------------------------------------------------

    @staticmethod
    def _rows(result: Any, items_key: str | None) -> list[dict[str, Any]]:
        rows = result.get(items_key) if items_key and isinstance(result, dict) else result
        if rows is None or rows == {}:
            return []
        if not isinstance(rows, list):
            raise ApiError(200, "", "", SOURCE, message="list result is not an array")
        return rows

    def _fast_export(self, method: str, params: dict[str, Any], last_id: int,
                     items_key: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """``order[ID]=ASC``, ``filter[>ID]=last``, ``start=-1``; ``batch_pages`` per request.

        Batch results are read in command order and stop at the first short page (the later
        commands chained on a row 49 that does not exist). A command blocked by
        ``OPERATION_TIME_LIMIT`` ends the batch early; the export resumes from the last row
        received, first waiting for the method's reset (a direct call waits on its 429)."""
        ref_path = f"[{items_key}]" if items_key else ""
        base_filter = dict(params.get("filter") or {})

        def page_params(ref: Any) -> dict[str, Any]:
            return {**params, "order": {"ID": "ASC"}, "filter": {**base_filter, ">ID": ref},
                    "start": -1}

        while True:
            pages: list[list[dict[str, Any]]] = []
            if self.batch_pages == 1:
                pages.append(self._rows(self.call(method, page_params(last_id))["result"],
                                        items_key))
            else:
                cmds: dict[str, str] = {}
                for i in range(self.batch_pages):
                    ref = (str(last_id) if i == 0
                           else f"$result[p{i - 1}]{ref_path}[{PAGE_SIZE - 1}][ID]")
                    cmds[f"p{i}"] = method + "?" + php_query(page_params(ref))
                out = self.batch(cmds)
                for key, cmd in cmds.items():
                    error = out["result_error"].get(key)
                    if self._time_limited(error):
                        if pages:
                            self._wait_for_operating_reset(out, method)
                        else:  # nothing came back: a direct call waits on its own 429
                            pages.append(self._rows(
                                self.call(method, page_params(last_id))["result"], items_key))
                        break
                    if error is not None:
                        raise self._batch_error(key, cmd, error)
                    if key not in out["result"]:
                        raise ApiError(200, "", "", SOURCE,
                                       message=f"batch command {key!r} ({method}) has no result")
                    rows = self._rows(out["result"][key], items_key)
                    pages.append(rows)
                    if len(rows) < PAGE_SIZE:
                        break  # later commands chained on a missing row 49: ignore them
            for rows in pages:
                if rows:
                    yield rows
                if len(rows) < PAGE_SIZE:
                    return
                last_id = int(rows[-1]["ID"])

    def _offset_pages(self, method: str, params: dict[str, Any],
                      items_key: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """``start``/``next`` paging; once ``total`` is known the rest goes through ``batch``."""
        data = self.call(method, {**params, "start": 0})
        rows = self._rows(data["result"], items_key)
        if rows:
            yield rows
        nxt = data.get("next")
        total = int(data.get("total") or 0)
        while nxt is not None:
            starts = list(range(int(nxt), total, PAGE_SIZE))[: self.batch_pages]
            if len(starts) <= 1:
                data = self.call(method, {**params, "start": int(nxt)})
                rows = self._rows(data["result"], items_key)
                if rows:
                    yield rows
                nxt = data.get("next")
                continue
            cmds = {f"s{s}": method + "?" + php_query({**params, "start": s}) for s in starts}
            out = self.batch(cmds)
            nxt = out["result_next"].get(list(cmds)[-1])
            for start, (key, cmd) in zip(starts, cmds.items(), strict=True):
                error = out["result_error"].get(key)
                if self._time_limited(error):
                    if start == starts[0]:  # nothing came back: a direct call waits on its 429
                        data = self.call(method, {**params, "start": start})
                        rows = self._rows(data["result"], items_key)
                        if rows:
                            yield rows
                        nxt = data.get("next")
                    else:
                        self._wait_for_operating_reset(out, method)
                        nxt = start
                    break
                if error is not None:
                    raise self._batch_error(key, cmd, error)
                rows = self._rows(out["result"].get(key), items_key)
                if rows:
                    yield rows

    # -- pages --------------------------------------------------------------------------------

    def pages(self, entity: str, cursor: str | None) -> Iterator[Page]:
        """Pages of one entity since ``cursor``.

        Cursors: leads/deals/contacts the newest ``DATE_MODIFY`` seen (as received, with its
        offset); stagehistory ``{"1": last lead-row id, "2": last deal-row id}`` as JSON; None
        for the full-pull entities (users, statuses, categories).
        """
        spec = ENTITY_SPECS.get(entity)
        if spec is None:
            raise ValueError(f"unknown Bitrix24 entity {entity!r}; expected one of "
                             f"{self.ENTITIES}")
        if spec.mode == "stagehistory":
            yield from self._stagehistory_pages(entity, spec, cursor)
            return
        params: dict[str, Any] = dict(spec.params)
        if spec.select:
            params["select"] = list(spec.select)
        best_raw, best = cursor, parse_b24_datetime(cursor) if cursor else None
        if spec.mode == "modified":
            if cursor is None:
                row_pages = self._fast_export(spec.method, params, 0)
            else:
                since = self._since(cursor)
                params["filter"] = {">DATE_MODIFY": since}
                params["order"] = {"ID": "ASC"}
                row_pages = self._offset_pages(spec.method, params)
        elif spec.mode == "status":
            row_pages = self._offset_pages(spec.method, params)
        else:
            row_pages = self._offset_pages(spec.method, params,
                                        "categories" if entity == "categories" else None)
        scan_start: str | None = None
        for number, rows in enumerate(row_pages, start=1):
            if number == 1:
                scan_start = self.server_started
            records = []
            for row in rows:
                if not isinstance(row, dict) or row.get(spec.id_field) is None:
                    raise ApiError(200, spec.method, str(row)[:200], SOURCE,
                                   message=f"{entity} element without {spec.id_field}")
                updated = (parse_b24_datetime(row.get(spec.updated_field))
                           if spec.updated_field else None)
                if spec.mode == "modified" and updated is not None and (
                        best is None or updated > best):
                    best, best_raw = updated, str(row[spec.updated_field])
                records.append(RawRecord(source=SOURCE, account=self.account, entity=entity,
                                         record_id=str(row[spec.id_field]), payload=row,
                                         updated_at=updated))
            cursor_after = (_capped(best, best_raw, scan_start) if spec.mode == "modified"
                            else None)
            log.info("Bitrix24 %s %s page %d: %d records (cursor_after=%s)", self.account,
                     entity, number, len(records), cursor_after)
            yield Page(records=records, cursor_after=cursor_after,
                       meta={"page": number, "method": spec.method})

    def _since(self, cursor: str) -> str:
        """``cursor - overlap_s`` in the cursor's own offset (the documented ISO form)."""
        try:
            parsed = datetime.fromisoformat(cursor)
        except ValueError:
            raise ValueError(f"Bitrix24 cursor must be an ISO datetime, got {cursor!r}") from None
        return (parsed - timedelta(seconds=self.overlap_s)).isoformat(timespec="seconds")

    def _stagehistory_pages(self, entity: str, spec: EntitySpec,
                            cursor: str | None) -> Iterator[Page]:
        try:
            state = {str(k): int(v) for k, v in json.loads(cursor).items()} if cursor else {}
        except (ValueError, TypeError, AttributeError):
            raise ValueError(f"Bitrix24 stagehistory cursor must be JSON like "
                             f'{{"1": 0, "2": 0}}, got {cursor!r}') from None
        number = 0
        for type_id in STAGEHISTORY_TYPES:
            key = str(type_id)
            last = state.get(key, 0)
            for rows in self._fast_export(spec.method, {"entityTypeId": type_id}, last, "items"):
                number += 1
                records = []
                for row in rows:
                    if not isinstance(row, dict) or row.get("ID") is None:
                        raise ApiError(200, spec.method, str(row)[:200], SOURCE,
                                       message="stagehistory element without ID")
                    state[key] = max(state.get(key, 0), int(row["ID"]))
                    records.append(RawRecord(
                        source=SOURCE, account=self.account, entity=entity,
                        record_id=f"{type_id}:{row['ID']}",
                        payload={**row, "_entityTypeId": type_id},
                        updated_at=parse_b24_datetime(row.get("CREATED_TIME")),
                    ))
                cursor_after = json.dumps(dict(sorted(state.items())))
                log.info("Bitrix24 %s %s (entityTypeId=%d) page %d: %d records "
                         "(cursor_after=%s)", self.account, entity, type_id, number,
                         len(records), cursor_after)
                yield Page(records=records, cursor_after=cursor_after,
                           meta={"page": number, "entityTypeId": type_id})

    def check_connection(self) -> str:
        """One cheap authenticated call for `voronka doctor` (``user.current``): proves the
        webhook, or the OAuth token (renewed as a run would), and names the user whose rights
        bound what the extract sees."""
        data = self.call("user.current")
        user = data.get("result") if isinstance(data.get("result"), dict) else {}
        return f"portal {self.account}, acting as user #{user.get('ID', '?')}"

    def close(self) -> None:
        self.client.close()
        self.oauth.close()
