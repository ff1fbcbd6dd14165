"""amoCRM / Kommo API v4 source: leads, contacts, companies, pipelines, events, users, loss
reasons, the buyer funnel (customers, customer statuses, transactions) and deleted leads.

API notes: docs reference ``crm_apis.md`` §1 (https://developers.kommo.com/docs/).

Design choices, each answering an amoCRM gotcha:

- **Auth**: OAuth2 with rotating, effectively single-use refresh tokens. The new pair is saved
  atomically (``TokenStore.save``) under an exclusive file lock *before* the new access token is
  used; a worker that waited on the lock re-reads the store and reuses a pair another worker just
  obtained instead of spending the refresh token twice. A long-lived token skips all of this.
- **Rate limit**: 7 req/s per integration, shared by every entity through ``limiter_for``;
  429s are retried honouring ``Retry-After``/``retry_after``.
- **Incremental**: leads and contacts by ``filter[updated_at][from] = cursor - overlap_s`` with
  ``order[updated_at]=asc``; events (type ``lead_status_changed``) by ``filter[created_at][from]``
  with ``limit=100`` (the RU docs cap events at 100). The overlap re-reads rows edited during
  the previous run's last request and rows that share the cursor second; landing de-duplicates
  them by payload hash. The buyers' status history (``customer_status_changed``) is its own
  entity, ``customer_events``, on the same endpoint with its own cursor (and feature-off
  handling like customers), so the lead events' cursor is untouched by it.
- **Complete under edits** (issue 12 item 1): ``page=N`` over ``order[updated_at]`` skips one
  record per edit made between two requests, so those lists are read in keyset windows on
  (``updated_at``, ``id``): each request is page 1 from the newest ``updated_at`` seen; a page
  all in one second is read by ``order[id]`` passes of that second (``_keyset_pages``).
- **Payloads** are kept as returned except ``_links`` (at every level): links carry the host name,
  which would make identical records hash differently across hosts.
- Users, pipelines and loss reasons are small and have no usable change filter: full pull.
- **Companies and customers** follow contacts (``updated_at`` + overlap); customers are asked
  ``with=contacts`` because a transaction belongs to its customer's main contact.
- **Transactions** (buyer-funnel purchases, which are orders too) have no documented change
  filter: full pull, paged.
- **Optional entities** (companies, the buyer funnel, the bin) may not exist on an account.
  Their documented "feature off" answers (422 on ``/api/v4/customers*`` while customers mode
  is off, 402 when the tariff lacks the feature) and a first pull answered 204 No Content
  ("nothing here") land zero records with a warning, and the source yields a note page
  (``meta["skipped"]``) that the raw asset shows in its metadata: not a failed run. The core
  entities (leads, contacts, pipelines, ...) never skip: a 402 there is an unpaid account.
- **Deleted leads** vanish from the normal leads list, so the raw leads keep their last live
  version; ``with=only_deleted`` lists the bin (``{id, updated_at, is_deleted}`` only). It is
  pulled in full each run (the bin is small; payload hashes de-duplicate) so staging can tell a
  lead deleted after the version we hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from extractors.http import (
    ApiError,
    AuthorizationError,
    HalPage,
    HttpClient,
    HttpOptions,
    Page,
    iter_hal_pages,
    limiter_for,
)
from extractors.state import TokenSet, TokenStore
from warehouse.records import RawRecord

log = logging.getLogger("voronka.extractors")

SOURCE = "amocrm"
TOKEN_PATH = "/oauth2/access_token"
EVENTS_LIMIT = 100  # amocrm.ru: "Максимум – 100" (crm_apis.md §1.7)
EXPIRY_SKEW_S = 300.0  # refresh this long before the access token's stated expiry


@dataclass(frozen=True)
class EntitySpec:
    path: str
    embedded_key: str
    incremental_field: str | None  # "updated_at" | "created_at" | None (full pull)
    limit: int | None  # None = unpaged endpoint
    extra_params: tuple[tuple[str, str], ...] = ()
    updated_field: str | None = None  # payload field used for RawRecord.updated_at
    # HTTP statuses meaning "this feature is off for the account": zero records + a warning
    feature_off_statuses: tuple[int, ...] = ()


# 402 Payment Required: the tariff lacks the feature; 422: customers mode is off (§1.9, §1.11)
BUYERS_OFF = (402, 422)
OPTIONAL_OFF = (402,)


ENTITY_SPECS: dict[str, EntitySpec] = {
    "users": EntitySpec("/api/v4/users", "users", None, 250),
    "pipelines": EntitySpec("/api/v4/leads/pipelines", "pipelines", None, None),
    "loss_reasons": EntitySpec(
        "/api/v4/leads/loss_reasons", "loss_reasons", None, None, updated_field="updated_at"
    ),
    "contacts": EntitySpec(
        "/api/v4/contacts", "contacts", "updated_at", 250,
        (("order[updated_at]", "asc"),), updated_field="updated_at",
    ),
    "leads": EntitySpec(
        "/api/v4/leads", "leads", "updated_at", 250,
        (("order[updated_at]", "asc"), ("with", "contacts")), updated_field="updated_at",
    ),
    "events": EntitySpec(
        "/api/v4/events", "events", "created_at", EVENTS_LIMIT,
        (("filter[type]", "lead_status_changed"),), updated_field="created_at",
    ),
    # the buyers' status history: the same endpoint, its own entity and cursor, so the lead
    # events' cursor never moves past buyer events (or back); off with the buyer funnel
    "customer_events": EntitySpec(
        "/api/v4/events", "events", "created_at", EVENTS_LIMIT,
        (("filter[type]", "customer_status_changed"),), updated_field="created_at",
        feature_off_statuses=BUYERS_OFF,
    ),
    "companies": EntitySpec(
        "/api/v4/companies", "companies", "updated_at", 250,
        (("order[updated_at]", "asc"),), updated_field="updated_at",
        feature_off_statuses=OPTIONAL_OFF,
    ),
    "customers": EntitySpec(
        "/api/v4/customers", "customers", "updated_at", 250,
        (("order[updated_at]", "asc"), ("with", "contacts")), updated_field="updated_at",
        feature_off_statuses=BUYERS_OFF,
    ),
    "customer_statuses": EntitySpec(
        "/api/v4/customers/statuses", "statuses", None, None, feature_off_statuses=BUYERS_OFF,
    ),
    "transactions": EntitySpec(
        "/api/v4/customers/transactions", "transactions", None, 250, updated_field="updated_at",
        feature_off_statuses=BUYERS_OFF,
    ),
    "deleted_leads": EntitySpec(
        "/api/v4/leads", "leads", None, 250, (("with", "only_deleted"),),
        updated_field="updated_at", feature_off_statuses=OPTIONAL_OFF,
    ),
}


@dataclass
class _KeysetRun:
    """What one keyset walk has emitted: id -> updated_at, the newest stamp, request count."""

    best: int | None = None
    emitted: dict[str, int] = field(default_factory=dict)
    requests: int = 0


def _has_next(hal: HalPage) -> bool:
    """Whether the API says more records follow this page (HAL ``_links.next``)."""
    return bool(((hal.body.get("_links") or {}).get("next") or {}).get("href"))


def strip_links(value: Any) -> Any:
    """A copy of ``value`` without any ``_links`` key, at every nesting level."""
    if isinstance(value, dict):
        return {k: strip_links(v) for k, v in value.items() if k != "_links"}
    if isinstance(value, list):
        return [strip_links(v) for v in value]
    return value


def unix_to_utc_naive(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return datetime.fromtimestamp(int(value), tz=UTC).replace(tzinfo=None)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def account_address(base_url: str, subdomain: str) -> tuple[str, str]:
    """(base URL, subdomain) of an account from either (the other is derived): ``acme`` ->
    https://acme.amocrm.ru; https://acme.kommo.com -> ``acme``. Names the settings
    (AMOCRM_BASE_URL, AMOCRM_SUBDOMAIN) when neither says which account."""
    base_url, subdomain = base_url.strip(), subdomain.strip()
    if not base_url and not subdomain:
        raise ValueError("amoCRM needs AMOCRM_BASE_URL (https://<subdomain>.amocrm.ru) "
                         "or AMOCRM_SUBDOMAIN")
    if not base_url:
        base_url = f"https://{subdomain}.amocrm.ru"
    if not subdomain:
        host = urlsplit(base_url).hostname or ""
        subdomain = host.split(".")[0] if host else ""
        if not subdomain:
            raise ValueError(f"AMOCRM_BASE_URL {base_url!r} names no host; set AMOCRM_SUBDOMAIN")
    return base_url, subdomain


class AmoCRMSource:
    """Pages of ``RawRecord`` for each amoCRM entity; see the module docstring."""

    name = SOURCE
    ENTITIES = ("users", "pipelines", "loss_reasons", "contacts", "leads", "events",
                "companies", "customers", "customer_statuses", "transactions", "deleted_leads",
                "customer_events")

    def __init__(
        self,
        base_url: str,
        *,
        account: str,
        client_id: str | None = None,
        client_secret: str | None = None,
        redirect_uri: str | None = None,
        token_store: TokenStore | None = None,
        initial_refresh_token: str | None = None,
        long_lived_token: str | None = None,
        rate_limit_per_s: float = 7.0,
        page_limit: int = 250,
        overlap_s: int = 3600,
        http_options: HttpOptions | None = None,
    ) -> None:
        if long_lived_token is None:
            missing = [n for n, v in (("client_id", client_id), ("client_secret", client_secret),
                                      ("token_store", token_store)) if not v]
            if missing:
                raise ValueError(
                    "amoCRM OAuth needs " + ", ".join(missing) + " (or pass long_lived_token)"
                )
        if not 1 <= page_limit <= 250:
            raise ValueError("page_limit must be between 1 and 250 (amoCRM maximum)")
        self.base_url = base_url.rstrip("/")
        self.account = account
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.token_store = token_store
        self.initial_refresh_token = initial_refresh_token
        self.long_lived_token = long_lived_token
        self.page_limit = page_limit
        self.overlap_s = int(overlap_s)
        self._tokens: TokenSet | None = None
        options = http_options or HttpOptions()
        self.client = HttpClient(
            self.base_url,
            # paced, no burst after idling: amoCRM counts arrivals in a sliding second, and
            # a burst of 7 leaves arrival jitter only the window's 50 ms (3 × 429 in a loaded
            # scale-10 demo); paced, 8 calls span 1.08 s at 6.5 req/s
            limiter=limiter_for(f"amocrm:{self.base_url}:{client_id or 'long-lived'}",
                                rate_limit_per_s, burst=False),
            auth=self._auth_headers,
            on_unauthorized=self._on_unauthorized,
            redact=[client_secret, initial_refresh_token, long_lived_token],
            source=SOURCE,
            headers={"Accept": "application/hal+json, application/json"},
            forbidden_hint="amoCRM answers 403 when the IP or account is blocked after repeated "
            "429s, or when the token lacks rights; this is not retried",
            **options.client_kwargs(),
        )

    def __repr__(self) -> str:
        return f"AmoCRMSource(base_url={self.base_url!r}, account={self.account!r})"

    # -- auth ---------------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token()}"}

    def access_token(self) -> str:
        """A usable access token, refreshing (and persisting the rotation) when needed."""
        if self.long_lived_token:
            return self.long_lived_token
        tokens = self._tokens
        if tokens is None or not tokens.access_valid(skew_s=EXPIRY_SKEW_S):
            tokens = self._refresh(stale_access=tokens.access_token if tokens else None)
        assert tokens.access_token is not None
        return tokens.access_token

    def _on_unauthorized(self) -> None:
        if self.long_lived_token:
            raise AuthorizationError(
                401, self.base_url, "", SOURCE,
                message="amoCRM rejected the long-lived token (expired or revoked); generate a "
                "new one in the integration's 'Keys and scopes' tab",
            )
        stale = self._tokens.access_token if self._tokens else None
        self._refresh(stale_access=stale, force=True)

    def _refresh(self, *, stale_access: str | None, force: bool = False) -> TokenSet:
        """Refresh under the store's lock; reuse a pair another worker obtained meanwhile."""
        store = self.token_store
        assert store is not None
        with store.lock():
            stored = store.load()
            if stored is not None:
                for t in (stored.access_token, stored.refresh_token):
                    self.client.add_secret(t)
                fresh_elsewhere = stored.access_token != stale_access
                if stored.access_valid(skew_s=EXPIRY_SKEW_S) and (not force or fresh_elsewhere):
                    self._tokens = stored
                    return stored
            refresh_token = (stored.refresh_token if stored else None) or (
                self.initial_refresh_token
            )
            if not refresh_token:
                raise AuthorizationError(
                    None, self.client.safe_url(self.client.url_for(TOKEN_PATH)), "", SOURCE,
                    message=f"no amoCRM refresh token: the token store {store.path} is empty "
                    "and no initial refresh token was given; authorise the integration first",
                )
            body = {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "redirect_uri": self.redirect_uri,
            }
            try:
                resp = self.client.post(TOKEN_PATH, json=body, authenticate=False)
            except ApiError as exc:
                if exc.status in (400, 401, 403):
                    raise AuthorizationError(
                        exc.status, exc.url, exc.body_excerpt, SOURCE,
                        message=(
                            "amoCRM refused the refresh token (already used, revoked or older "
                            "than 3 months): re-authorise the integration and store the new "
                            f"refresh token in {store.path} ({exc.detail})"
                        ),
                    ) from None
                raise
            data = resp.json()
            access, refresh = data.get("access_token"), data.get("refresh_token")
            if not access or not refresh:
                raise AuthorizationError(
                    resp.status_code, self.client.safe_url(resp.url), "", SOURCE,
                    message="token response lacks access_token/refresh_token",
                )
            self.client.add_secret(access)
            self.client.add_secret(refresh)
            issued = float(data.get("server_time") or time.time())
            # Our clock decides expiry; server_time only guards against a skewed server.
            issued = min(issued, time.time())
            tokens = TokenSet(access, refresh, issued + float(data.get("expires_in") or 86400))
            store.save(tokens)  # persist the rotated refresh token BEFORE using the new access
            self._tokens = tokens
            log.info("amoCRM %s: access token refreshed; new refresh token saved to %s",
                     self.account, store.path)
            return tokens

    # -- pages --------------------------------------------------------------------------------

    def pages(self, entity: str, cursor: str | None) -> Iterator[Page]:
        """Pages of one entity since ``cursor`` (Unix seconds as a string; None = everything).

        ``Page.cursor_after`` is the largest ``updated_at``/``created_at`` seen so far, or the
        incoming cursor when nothing newer was seen; None for full-pull entities.
        """
        spec = ENTITY_SPECS.get(entity)
        if spec is None:
            raise ValueError(f"unknown amoCRM entity {entity!r}; expected one of {self.ENTITIES}")
        pages = 0
        try:
            for page in self._pages(entity, spec, cursor):
                pages += 1
                yield page
        except ApiError as exc:
            if exc.status not in spec.feature_off_statuses:
                raise
            yield self._skipped(entity, f"HTTP {exc.status}, the feature is off for this "
                                        f"account; nothing to land ({exc.detail})")
            return
        if pages == 0 and (cursor is None or spec.incremental_field is None):
            yield self._skipped(entity, "HTTP 204 No Content, the account has none; "
                                        "nothing to land")

    def _skipped(self, entity: str, reason: str) -> Page:
        """A note page (no records) saying why nothing of ``entity`` lands, for the run log
        and the raw asset's metadata."""
        log.warning("amoCRM %s %s: %s", self.account, entity, reason)
        return Page(records=[], cursor_after=None, meta={"skipped": reason})

    def _params(self, entity: str, spec: EntitySpec, cursor: str | None) -> dict[str, Any]:
        """Query of the first page: paging, the spec's fixed filters, and the overlap window."""
        params: dict[str, Any] = dict(spec.extra_params)
        if spec.limit is not None:
            params["limit"] = min(spec.limit, self.page_limit)
            params["page"] = 1
        if spec.incremental_field and cursor is not None:
            since = _as_int(cursor)
            if since is None:
                raise ValueError(f"amoCRM {entity} cursor must be Unix seconds, got {cursor!r}")
            params[f"filter[{spec.incremental_field}][from]"] = max(0, since - self.overlap_s)
        return params

    def _pages(self, entity: str, spec: EntitySpec, cursor: str | None) -> Iterator[Page]:
        if spec.incremental_field == "updated_at" and spec.limit is not None:
            yield from self._keyset_pages(entity, spec, cursor)
            return
        yield from self._numbered_pages(entity, spec, cursor)

    # -- keyset windows on (updated_at, id) ---------------------------------------------------

    def _keyset_pages(self, entity: str, spec: EntitySpec, cursor: str | None) -> Iterator[Page]:
        """Pages of a list ordered by ``updated_at``, complete while records are edited.

        ``page=N`` over a moving order skips one record per edit made between two requests
        (the edited record jumps to the end; every later one moves up a place). So every
        request is page 1 of the window ``filter[updated_at][from] = S``, where S is the
        newest ``updated_at`` of the previous page: one request is one consistent snapshot,
        and every record older than S was on it. Records of second S seen already are not
        emitted twice. A full page all in one second (a bulk edit) cannot move S, so that
        second is read on its own, ordered by id (``_second_pages``), and S moves past it.
        """
        params = self._params(entity, spec, cursor)
        since = params.pop(f"filter[{spec.incremental_field}][from]", None)
        run = _KeysetRun(best=_as_int(cursor))
        while True:
            window = {**params, **({} if since is None else {"filter[updated_at][from]": since})}
            hal = self._first_page(spec, window)
            if hal is None:
                return
            stamps = [self._stamp(entity, hal.url, item) for item in hal.items]
            more = _has_next(hal)
            if more and min(stamps) == max(stamps):
                yield from self._second_pages(entity, spec, params, stamps[0], run)
                since = stamps[0] + 1
                continue
            page = self._keyset_page(entity, spec, hal, run)
            if page.records:
                yield page
            if not more:
                return
            if since is not None and max(stamps) <= since:
                raise ApiError(200, hal.url, "", SOURCE, message=f"{entity}: the "
                               "updated_at window did not move; the list ignores the filter")
            since = max(stamps)

    def _first_page(self, spec: EntitySpec, params: dict[str, Any]) -> HalPage | None:
        """Page 1 of a query (None on 204 No Content); later pages are never followed."""
        pages = iter_hal_pages(self.client, spec.path, params, spec.embedded_key)
        try:
            return next(pages, None)
        finally:
            pages.close()

    @staticmethod
    def _stamp(entity: str, url: str, item: Any) -> int:
        """The ``updated_at`` that orders the list; a record without one cannot be paged."""
        ts = _as_int(item.get("updated_at")) if isinstance(item, dict) else None
        if ts is None:
            raise ApiError(200, url, str(item)[:200], SOURCE,
                           message=f"{entity} element without an integer updated_at")
        return ts

    def _second_pages(self, entity: str, spec: EntitySpec, params: dict[str, Any],
                      second: int, run: _KeysetRun) -> Iterator[Page]:
        """Every record whose ``updated_at`` is ``second``, by ``order[id]=asc`` pages.

        An edit moves a record out of the second (to a later one, which the main window reads
        next), shifting the rest up; only a record read in the same pass can cause that skip.
        So passes repeat until one pass holds every id of the pass before it: then no record
        read in that pass left the second during it, and that pass missed nothing. Each other
        pass proves one record left, so a second in the past takes at most its size + 1
        passes; more means records keep arriving in it, which is reported, not skipped.
        """
        query = {k: v for k, v in params.items() if not k.startswith("order[")}
        query.update({"filter[updated_at][from]": second, "filter[updated_at][to]": second,
                      "order[id]": "asc"})
        previous: set[str] | None = None
        every: set[str] = set()
        passes = 0
        while True:
            passes += 1
            ids: set[str] = set()
            for hal in iter_hal_pages(self.client, spec.path, query, spec.embedded_key):
                ids.update(str(i.get("id")) for i in hal.items if isinstance(i, dict))
                page = self._keyset_page(entity, spec, hal, run)
                if page.records:
                    yield page
            if previous is not None and previous <= ids:
                return
            every |= ids
            if passes > len(every) + 1:
                raise ApiError(
                    None, self.client.safe_url(self.client.url_for(spec.path), query), "",
                    SOURCE, message=f"{entity} records kept arriving in second {second} "
                    f"through {passes} passes; the cursor has not moved, run again")
            previous = ids

    def _keyset_page(self, entity: str, spec: EntitySpec, hal: HalPage,
                     run: _KeysetRun) -> Page:
        """The records of ``hal`` not yet emitted in this run in this version."""
        records = []
        for item in hal.items:
            if not isinstance(item, dict) or item.get("id") is None:
                raise ApiError(200, hal.url, str(item)[:200], SOURCE,
                               message=f"{entity} element without an id")
            ts = self._stamp(entity, hal.url, item)
            if run.emitted.get(str(item["id"])) == ts:
                continue
            run.emitted[str(item["id"])] = ts
            run.best = ts if run.best is None else max(run.best, ts)
            records.append(self._record(entity, spec, item))
        run.requests += 1
        cursor_after = None if run.best is None else str(run.best)
        log.info("amoCRM %s %s request %d: %d new records (cursor_after=%s) %s",
                 self.account, entity, run.requests, len(records), cursor_after, hal.url)
        return Page(records=records, cursor_after=cursor_after,
                    meta={"page": run.requests, "url": hal.url})

    # -- numbered pages (lists whose order edits do not move) ---------------------------------

    def _numbered_pages(self, entity: str, spec: EntitySpec,
                        cursor: str | None) -> Iterator[Page]:
        """``page=N`` paging for events (append-only, by ``created_at``) and the full pulls
        (the API's default order is by id, which an edit does not move)."""
        params = self._params(entity, spec, cursor)
        best = _as_int(cursor) if spec.incremental_field else None
        for hal in iter_hal_pages(self.client, spec.path, params, spec.embedded_key):
            records = []
            for item in hal.items:
                if not isinstance(item, dict) or item.get("id") is None:
                    raise ApiError(200, hal.url, str(item)[:200], SOURCE,
                                   message=f"{entity} element without an id")
                if spec.incremental_field:
                    ts = _as_int(item.get(spec.incremental_field))
                    if ts is not None and (best is None or ts > best):
                        best = ts
                records.append(self._record(entity, spec, item))
            cursor_after = str(best) if spec.incremental_field and best is not None else None
            log.info("amoCRM %s %s page %d: %d records (cursor_after=%s) %s",
                     self.account, entity, hal.number, len(records), cursor_after, hal.url)
            yield Page(records=records, cursor_after=cursor_after,
                       meta={"page": hal.number, "url": hal.url})

    def _record(self, entity: str, spec: EntitySpec, item: dict[str, Any]) -> RawRecord:
        return RawRecord(
            source=SOURCE,
            account=self.account,
            entity=entity,
            record_id=str(item["id"]),
            payload=strip_links(item),
            updated_at=unix_to_utc_naive(item.get(spec.updated_field))
            if spec.updated_field else None,
        )

    def check_connection(self) -> str:
        """One cheap authenticated call for `voronka doctor` (``GET /api/v4/account``): proves
        the address and the credentials (refreshing the token like a run would) and names the
        account they reach. Raises ``ApiError``/``AuthorizationError`` like ``pages``."""
        resp = self.client.get("/api/v4/account")
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or data.get("id") is None:
            raise ApiError(resp.status_code, self.client.safe_url(resp.url), "", SOURCE,
                           message="/api/v4/account did not answer an amoCRM account")
        buyers = "off" if data.get("customers_mode") in (None, "disabled", "unavailable") else "on"
        return (f"account {data.get('name') or data['id']!s} ({data.get('subdomain') or '?'}), "
                f"currency {data.get('currency') or '?'}, buyers {buyers}")

    def close(self) -> None:
        self.client.close()
