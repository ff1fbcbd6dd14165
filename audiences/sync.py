"""Diff sync of a segment to an ad platform audience (or to files for a manual upload).

Why a diff: platforms bill, rate-limit and re-match on every uploaded row, and a customer who
leaves a segment (or withdraws consent) must leave the platform list too. So each run:

1. ``refresh_membership`` computes the current contactable members (dynamic: recomputed;
   static: frozen at the first computation, later minus anyone no longer contactable) and
   records entries and leaves in ``audiences.membership_history``;
2. the members' identifiers become per-customer hashed rows with the platform's rules
   (``audiences.destinations``: only hashes from here on);
3. those rows are compared with what was last sent (``audiences.synced_members``): new or
   changed customers are added, gone or changed customers are removed with exactly the rows
   sent for them before;
4. the first sync of a destination creates the platform audience (after the platform's
   minimum size check) and records its id at once, so a later failure never creates a second
   one;
5. only when every call succeeded are the new state and the run written, in one transaction;
   a failed call leaves the state as it was, so the next run re-sends the same diff (adds and
   removes are idempotent on every platform, so nothing is duplicated).

Everything that differs per destination (rows, create, add/remove, files, minimums) is asked
of its ``audiences.destinations.Destination``; a destination may hold back a small diff (VK:
a differential list needs at least 25 lines), which stays ``pending``, not marked synced,
until it grows. ``client=None`` writes the changes as files
plus a manifest instead (status ``exported``). Every run is recorded in
``audiences.sync_runs``; with ``out_dir`` every run also writes a manifest (segment, platform,
counts added/removed/excluded/pending, hash algorithm, time). ``now`` is always passed in: no
wall clock is read here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from audiences import state
from audiences.actions import ActionsResult, plan_actions, run_actions
from audiences.destinations import (
    DESTINATIONS,
    SINGLE,
    Destination,
    PlatformFile,
    Rows,
    get_destination,
)
from audiences.destinations.base import distinct_rows
from audiences.export import build_manifest
from audiences.segments import Segment, segment_frame

FILE_AUDIENCE = "file"  # the audience id of file-only exports in synced_members


@dataclass(frozen=True)
class Membership:
    """The contactable members of a segment at one run, and what changed since the last."""

    segment: str
    kind: str
    customer_ids: tuple[str, ...]
    excluded: int
    values: dict[str, float] | None = None  # customer -> look-alike value (value segments)
    entered: tuple[str, ...] = ()
    left: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.customer_ids)


@dataclass
class SyncResult:
    """What one ``sync_segment`` did. ``added``/``removed`` count customers whose rows were
    sent (a changed customer counts in both), ``pending`` those held back or not sent."""

    segment: str
    platform: str
    audience_id: str | None
    status: str  # success | failed | skipped | exported
    added: int = 0
    removed: int = 0
    excluded: int = 0
    pending: int = 0
    message: str = ""
    manifest_path: Path | None = None
    run_id: str = ""
    files: list[Path] = field(default_factory=list)
    actions: ActionsResult | None = None  # a CRM's tasks / deals on entry
    dry_run: bool = False


def new_run_id(now: datetime) -> str:
    """Sortable by time, unique within it."""
    return f"{state.naive_utc(now):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"


# -- membership --------------------------------------------------------------------------------

def _contactable(wh: Any, conn: Any, customer_ids: list[str]) -> set[str]:
    """Which of ``customer_ids`` are contactable now (a customer gone from dim_customers is
    not)."""
    found: set[str] = set()
    cur = conn.cursor()
    for start in range(0, len(customer_ids), 500):
        chunk = customer_ids[start:start + 500]
        cur.execute(f"select customer_id from marts.dim_customers where is_contactable "
                    f"and customer_id in ({wh._marks(len(chunk))})", chunk)
        found |= {str(r[0]) for r in cur.fetchall()}
    return found


def _matching(wh: Any, seg: Segment) -> tuple[dict[str, float | None], int]:
    """(contactable matching customer -> value, number of matching uncontactable ones)."""
    frame = segment_frame(wh, seg)
    ok = frame[frame["is_contactable"]]
    values = (ok["value"] if seg.value else pd.Series([None] * len(ok), index=ok.index))
    current = {str(c): (None if v is None or pd.isna(v) else float(v))
               for c, v in zip(ok["customer_id"], values, strict=True)}
    return current, int((~frame["is_contactable"]).sum())


def refresh_membership(wh: Any, seg: Segment, *, now: datetime,
                       run_id: str | None = None) -> Membership:
    """The current contactable members of ``seg``; entries and leaves go to the history.

    Static segments are frozen at their first computation; later runs return the frozen set
    minus anyone no longer contactable (consent withdrawn, do-not-contact)."""
    run_id = run_id or new_run_id(now)
    matching, excluded = _matching(wh, seg)
    with wh.connect() as conn:
        state.ensure_state(wh, conn)
        if seg.kind == "static":
            frozen = state.frozen_members(wh, conn, seg.name)
            if frozen is None:
                state.freeze_members(wh, conn, seg.name, matching, now)
                current = matching
            else:
                still = _contactable(wh, conn, sorted(frozen))
                current = {c: v for c, v in frozen.items() if c in still}
                excluded = len(frozen) - len(current)
        else:
            current = matching
        before = state.open_members(wh, conn, seg.name)
        entered = sorted(set(current) - before)
        left = sorted(before - set(current))
        still = _contactable(wh, conn, left)
        state.record_entries(wh, conn, seg.name, entered, run_id, now)
        state.record_leaves(wh, conn, seg.name,
                            {c: "left_segment" if c in still else "not_contactable"
                             for c in left}, run_id, now)
    values = ({c: (v or 0.0) for c, v in current.items()} if seg.value else None)
    return Membership(seg.name, seg.kind, tuple(sorted(current)), excluded, values,
                      tuple(entered), tuple(left))


# -- hashed rows per destination ---------------------------------------------------------------

def desired_rows(platform: Destination, identifiers: pd.DataFrame,
                 values: Mapping[str, float] | None = None) -> dict[str, Rows]:
    """list type -> customer -> the destination's hashed rows for that customer (the
    destination's shapes; ``values`` only matter for a value-based seed)."""
    return platform.desired_rows(identifiers, values)


# -- the diff ----------------------------------------------------------------------------------

def _dedup(rows: list[Any], skip: set[str] | None = None) -> list[Any]:
    """Rows in order without repeats (and without those whose key is in ``skip``)."""
    skip = skip or set()
    return [r for r in distinct_rows(rows) if state.row_key(r) not in skip]


@dataclass
class Diff:
    """The change of one destination: rows to remove then add, and per customer what the
    platform holds afterwards depending on which half was sent."""

    old: Rows
    new: Rows
    to_add: Rows = field(default_factory=dict)
    to_remove: Rows = field(default_factory=dict)
    add_rows: list[Any] = field(default_factory=list)
    remove_rows: list[Any] = field(default_factory=list)

    @property
    def adding(self) -> set[str]:
        return set(self.to_add)

    @property
    def removing(self) -> set[str]:
        return set(self.to_remove)

    def after(self, adds_sent: bool, removes_sent: bool) -> dict[str, list[Any] | None]:
        """customer -> rows the platform holds after the sent halves (None: none)."""
        out: dict[str, list[Any] | None] = {}
        for c in self.adding | self.removing:
            gone = {state.row_key(r) for r in self.to_remove.get(c, [])} if removes_sent \
                else set()
            rows = [r for r in self.old.get(c, []) if state.row_key(r) not in gone]
            if adds_sent:
                rows += self.to_add.get(c, [])
            out[c] = rows or None
        return out


def diff_rows(old: Rows, new: Rows) -> Diff:
    """Compare what was sent (``old``) with what should be there (``new``), per customer.

    A row still wanted by another customer is not removed; a row the platform already holds
    is not sent again."""
    d = Diff(old, new)
    for c in sorted(set(old) | set(new)):
        old_keys = {state.row_key(r) for r in old.get(c, [])}
        new_keys = {state.row_key(r) for r in new.get(c, [])}
        adds = [r for r in new.get(c, []) if state.row_key(r) not in old_keys]
        removes = [r for r in old.get(c, []) if state.row_key(r) not in new_keys]
        if adds:
            d.to_add[c] = adds
        if removes:
            d.to_remove[c] = removes
    wanted = {state.row_key(r) for rows in new.values() for r in rows}
    d.remove_rows = [r for r in _dedup([r for c in sorted(d.to_remove) for r in d.to_remove[c]])
                     if state.row_key(r) not in wanted]
    removed = {state.row_key(r) for r in d.remove_rows}
    held = {state.row_key(r) for rows in old.values() for r in rows} - removed
    d.add_rows = _dedup([r for c in sorted(d.to_add) for r in d.to_add[c]], held)
    return d


# -- platform calls ----------------------------------------------------------------------------

def _audience_name(seg: Segment, list_type: str) -> str:
    return f"voronka-{seg.name}" + (f"-{list_type}" if list_type else "")


def _send(client: Any, platform: Destination, audience_id: str, list_type: str, op: str,
          rows: list[Any], value_based: bool) -> None:
    """One add/remove of hashed rows through the destination (nothing to send: no call)."""
    if rows:
        platform.send(client, audience_id, list_type, op, rows, value_based=value_based)


# -- manifests and files -----------------------------------------------------------------------

def _stamp(now: datetime) -> str:
    return f"{state.naive_utc(now):%Y%m%dT%H%M%SZ}"


def _write_manifest(out_dir: Path, seg: Segment, platform: Destination, now: datetime,
                    manifest: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{seg.name}__{platform.name}__{_stamp(now)}.manifest.json"
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def sync_manifest(result: SyncResult, platform: Destination, now: datetime, members: int,
                  customers: int, audience_ids: Mapping[str, str]) -> dict[str, Any]:
    """The manifest of an API sync (no file: the rows went to the platform)."""
    return {
        "manifest_version": 1,
        "mode": "api",
        "segment": result.segment,
        "platform": platform.name,
        "status": result.status,
        "run_id": result.run_id,
        "audience_ids": dict(audience_ids),
        "hash_algorithm": platform.hash_algorithm,
        "hash_encoding": "hex",
        "created_at": now.isoformat(),
        "counts": {"members": members, "customers": customers, "added": result.added,
                   "removed": result.removed, "excluded": result.excluded,
                   "pending": result.pending},
        "minimum_rows": platform.min_rows,
        "message": result.message,
    }


# -- the sync ----------------------------------------------------------------------------------

@dataclass
class _Context:
    wh: Any
    seg: Segment
    platform: Destination
    now: datetime
    run_id: str
    membership: Membership
    rows: dict[str, Rows]
    value_based: bool
    out_dir: Path | None

    @property
    def customers(self) -> int:
        return len({c for by_c in self.rows.values() for c in by_c})


def _finish(ctx: _Context, result: SyncResult, audience_ids: Mapping[str, str],
            synced: Mapping[str, dict[str, list[Any] | None]] | None = None,
            manifest: dict[str, Any] | None = None) -> SyncResult:
    """Write the manifest (with out_dir), then the new state (if any) and the run, in one
    transaction."""
    if ctx.out_dir is not None:
        manifest = manifest or sync_manifest(result, ctx.platform, ctx.now, len(ctx.membership),
                                             ctx.customers, audience_ids)
        result.manifest_path = _write_manifest(ctx.out_dir, ctx.seg, ctx.platform, ctx.now,
                                               manifest)
    with ctx.wh.connect() as conn:
        state.ensure_state(ctx.wh, conn)
        for audience_id, after in (synced or {}).items():
            state.write_synced(ctx.wh, conn, ctx.seg.name, ctx.platform.name, audience_id,
                               after, ctx.run_id, ctx.now)
        state.record_run(ctx.wh, conn, run_id=ctx.run_id, segment=ctx.seg.name,
                         platform=ctx.platform.name, audience_id=result.audience_id,
                         started_at=ctx.now, finished_at=ctx.now, status=result.status,
                         added=result.added, removed=result.removed,
                         excluded=result.excluded, pending=result.pending,
                         message=result.message)
    return result


def _joined(ids: Mapping[str, str]) -> str | None:
    if not ids:
        return None
    if list(ids) == [SINGLE]:
        return ids[SINGLE]
    return ",".join(f"{lt}:{aid}" for lt, aid in sorted(ids.items()))


def sync_segment(wh: Any, seg: Segment, platform: str, client: Any = None, *,
                 now: datetime, out_dir: str | Path | None = None, allow_small: bool = False,
                 audience_id: str | Mapping[str, str] | None = None,
                 membership: Membership | None = None) -> SyncResult:
    """Bring ``platform``'s audience of ``seg`` up to date with the segment's current members.

    ``client``: the platform's audience client (``audiences.clients``); None writes the
    changes as files into ``out_dir`` instead. ``audience_id``: an existing platform audience
    to use on the first sync (VK: ``{list type: id}``); otherwise one is created.
    ``membership``: the segment's ``refresh_membership`` of this run, when the caller has it
    (one segment going to six platforms computed it seven times); else computed here. Returns
    a ``SyncResult``; platform errors do not raise, they give status ``failed``."""
    p = get_destination(platform)
    with state.sync_lock(wh, seg.name, p.name):
        return _sync_locked(wh, seg, p, client, now=now, out_dir=out_dir,
                            allow_small=allow_small, audience_id=audience_id,
                            membership=membership)


def _sync_locked(wh: Any, seg: Segment, p: Destination, client: Any, *, now: datetime,
                 out_dir: str | Path | None, allow_small: bool,
                 audience_id: str | Mapping[str, str] | None,
                 membership: Membership | None) -> SyncResult:
    if client is None and not p.file_export:
        raise ValueError(f"{p.name} has no file mode (it needs its API: raw identifiers or CRM "
                         f"ids never go to files); configure its client")
    run_id = new_run_id(now)
    if membership is None:
        membership = refresh_membership(wh, seg, now=now, run_id=run_id)
    value_based = bool(seg.value) and p.value_based_seeds
    identifiers = p.identifiers(wh, membership.customer_ids, client)
    rows = desired_rows(p, identifiers, membership.values if value_based else None)
    ctx = _Context(wh, seg, p, now, run_id, membership, rows, value_based,
                   Path(out_dir) if out_dir is not None else None)
    if client is None:
        if out_dir is None:
            raise ValueError("a file-only sync (client=None) needs out_dir")
        return _export(ctx, allow_small)
    result = _sync_api(ctx, client, allow_small, p.audience_ids(audience_id))
    if p.supports_actions and seg.actions:
        result.actions = _actions(ctx, client, identifiers)
    return result


def _actions(ctx: _Context, client: Any, contacts: pd.DataFrame) -> ActionsResult:
    """The segment's actions on this CRM; an error that stops them all is recorded in the
    result (the records stay pending or failed and are retried next run)."""
    try:
        return run_actions(ctx.wh, ctx.seg, ctx.platform, client, contacts, now=ctx.now,
                           run_id=ctx.run_id)
    except Exception as exc:
        out = ActionsResult()
        out.failed, out.errors = 1, [_safe_message(exc)]
        return out


def plan_segment(wh: Any, seg: Segment, platform: str, client: Any = None, *,
                 now: datetime) -> SyncResult:
    """What ``sync_segment`` would do now (``--dry-run``): customers to add and remove, the
    audience to create and, on a CRM, the tasks and deals to create. Nothing is written and,
    with ``client``, only reads are sent (none without one)."""
    p = get_destination(platform)
    matching, excluded = _matching(wh, seg)
    file_mode = client is None and p.file_export
    with wh.connect() as conn:
        state.ensure_state(wh, conn)
        current = matching
        if seg.kind == "static":
            frozen = state.frozen_members(wh, conn, seg.name)
            if frozen is not None:
                still = _contactable(wh, conn, sorted(frozen))
                current = {c: v for c, v in frozen.items() if c in still}
                excluded = len(frozen) - len(current)
        before = state.open_members(wh, conn, seg.name)
        known = {lt: d.audience_id for lt, d in
                 state.destinations(wh, conn, seg.name, p.name).items()}
        audiences = ({lt: _file_audience(lt) for lt in p.list_types} if file_mode else known)
        synced = {lt: state.synced_members(wh, conn, seg.name, p.name, aid)
                  for lt, aid in audiences.items()}
    value_based = bool(seg.value) and p.value_based_seeds
    values = {c: (v or 0.0) for c, v in current.items()} if value_based else None
    identifiers = p.identifiers(wh, sorted(current), client)
    rows = p.desired_rows(identifiers, values)
    adding: set[str] = set()
    removing: set[str] = set()
    for lt in p.list_types:
        d = diff_rows(synced.get(lt, {}), rows.get(lt, {}))
        adding |= d.adding
        removing |= d.removing
    result = SyncResult(seg.name, p.name, None if file_mode else _joined(known), "dry_run",
                        added=len(adding), removed=len(removing), excluded=excluded,
                        dry_run=True)
    result.message = f"would add {len(adding)}, remove {len(removing)} customers"
    if not file_mode and not known:
        result.message += f"; would create the {p.name} audience voronka-{seg.name}"
    if p.supports_actions and seg.actions:
        result.actions = plan_actions(wh, seg, p, identifiers, members=set(current),
                                      entering=sorted(set(current) - before), now=now)
    return result


def _load_state(ctx: _Context, given: dict[str, str]) -> tuple[dict[str, str], dict[str, Rows]]:
    """(list type -> recorded audience id, list type -> synced rows); a given audience id is
    recorded when none is."""
    with ctx.wh.connect() as conn:
        state.ensure_state(ctx.wh, conn)
        known = {lt: d.audience_id for lt, d in
                 state.destinations(ctx.wh, conn, ctx.seg.name, ctx.platform.name).items()}
        for lt, aid in given.items():
            if lt not in known:
                state.save_destination(ctx.wh, conn, ctx.seg.name, ctx.platform.name, lt, aid,
                                       ctx.now)
                known[lt] = aid
        synced = {lt: state.synced_members(ctx.wh, conn, ctx.seg.name, ctx.platform.name, aid)
                  for lt, aid in known.items()}
    return known, synced


def _record_created(ctx: _Context, list_type: str, audience_id: str,
                    rows: Rows | None) -> None:
    """Record a new platform audience at once (and the rows sent with its creation)."""
    with ctx.wh.connect() as conn:
        state.ensure_state(ctx.wh, conn)
        state.save_destination(ctx.wh, conn, ctx.seg.name, ctx.platform.name, list_type,
                               audience_id, ctx.now)
        if rows:
            state.write_synced(ctx.wh, conn, ctx.seg.name, ctx.platform.name, audience_id,
                               dict(rows), ctx.run_id, ctx.now)


def _safe_message(exc: BaseException) -> str:
    """The error text; client errors are already redacted by the HTTP layer."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:1000]


def _sync_api(ctx: _Context, client: Any, allow_small: bool,
              given: dict[str, str]) -> SyncResult:
    p, seg = ctx.platform, ctx.seg
    known, synced = _load_state(ctx, given)
    touched = set(ctx.membership.customer_ids).union(*(set(rows) for rows in synced.values()))
    client = p.bind(client, ctx.wh, sorted(touched))
    result = SyncResult(seg.name, p.name, _joined(known), "success",
                        excluded=ctx.membership.excluded, run_id=ctx.run_id)
    to_create = [lt for lt in p.list_types if lt not in known and ctx.rows.get(lt)]
    if not known and not to_create:
        to_create = list(p.list_types[:1])  # nothing at all to upload: too small
    small = p.too_small({lt: ctx.rows.get(lt, {}) for lt in to_create}) if to_create else None
    deferred: list[str] = []
    if small is not None and not allow_small:
        if not known:  # a first sync below the platform's minimum: nothing is created
            result.status, result.message = "skipped", str(small)
            result.pending = ctx.customers
            return _finish(ctx, result, known)
        # VK: another list already exists; this type waits until it is big enough
        deferred = [lt for lt in to_create if p.too_small({lt: ctx.rows[lt]}) is not None]
        to_create = [lt for lt in to_create if lt not in deferred]
        small = None
    created_with_rows: set[str] = set()
    plans: dict[str, Diff] = {}
    try:
        for lt in to_create:
            rows = ctx.rows.get(lt, {})
            all_rows = _dedup([r for c in sorted(rows) for r in rows[c]])
            if not all_rows and not p.creates_empty:
                continue
            aid, with_rows = p.create(client, _audience_name(seg, lt), seg.description, lt,
                                      all_rows, value_based=ctx.value_based,
                                      small=small is not None)
            _record_created(ctx, lt, aid, rows if with_rows else None)
            known[lt] = aid
            synced[lt] = dict(rows) if with_rows else {}
            if with_rows:
                created_with_rows |= set(rows)
        result.audience_id = _joined(known)
        sends: dict[str, tuple[bool, bool]] = {}
        for lt, aid in sorted(known.items()):
            d = diff_rows(synced.get(lt, {}), ctx.rows.get(lt, {}))
            plans[lt] = d
            sends[lt] = p.held_back(d.add_rows, d.remove_rows)
            adds_ok, removes_ok = sends[lt]
            if removes_ok:
                _send(client, p, aid, lt, "remove", d.remove_rows, ctx.value_based)
            if adds_ok:
                _send(client, p, aid, lt, "add", d.add_rows, ctx.value_based)
    except Exception as exc:  # any client error fails this run, not the caller
        result.status, result.message = "failed", _safe_message(exc)
        result.audience_id = _joined(known)
        result.added = len(created_with_rows)
        result.pending = len({c for d in plans.values() for c in d.adding | d.removing}
                             | _unplanned(ctx, synced, plans))
        return _finish(ctx, result, known)
    result = _finish_success(ctx, result, known, plans, sends, created_with_rows, deferred)
    return result


def _unplanned(ctx: _Context, synced: Mapping[str, Rows], plans: Mapping[str, Diff]
               ) -> set[str]:
    """Customers whose change was never attempted because an earlier call failed."""
    out: set[str] = set()
    for lt in ctx.platform.list_types:
        if lt not in plans:
            d = diff_rows(synced.get(lt, {}), ctx.rows.get(lt, {}))
            out |= d.adding | d.removing
    return out


def _finish_success(ctx: _Context, result: SyncResult, known: Mapping[str, str],
                    plans: Mapping[str, Diff], sends: Mapping[str, tuple[bool, bool]],
                    created_with_rows: set[str], deferred: list[str]) -> SyncResult:
    added, removed, pending = set(created_with_rows), set(), set()
    for lt in deferred:
        pending |= set(ctx.rows[lt])
    held = [f"{lt} list not created: {ctx.platform.too_small({lt: ctx.rows[lt]})}"
            for lt in deferred]
    after: dict[str, dict[str, list[Any] | None]] = {}
    for lt, d in plans.items():
        adds_ok, removes_ok = sends[lt]
        after[known[lt]] = d.after(adds_ok, removes_ok)
        (added if adds_ok else pending).update(d.adding)
        (removed if removes_ok else pending).update(d.removing)
        for what, ok, rows in (("add", adds_ok, d.add_rows), ("remove", removes_ok,
                                                              d.remove_rows)):
            if not ok:
                held.append(f"{len(rows)} {lt} lines to {what}")
    result.added, result.removed, result.pending = len(added), len(removed), len(pending)
    result.message = f"added {len(added)}, removed {len(removed)} customers"
    if held:
        result.message += f"; held back ({ctx.platform.held_back_note}): {'; '.join(held)}"
    return _finish(ctx, result, known, after)


def _export(ctx: _Context, allow_small: bool) -> SyncResult:
    """File-only mode: the changes since the last export as platform files + a manifest."""
    p, seg = ctx.platform, ctx.seg
    with ctx.wh.connect() as conn:
        state.ensure_state(ctx.wh, conn)
        synced = {lt: state.synced_members(ctx.wh, conn, seg.name, p.name,
                                           _file_audience(lt)) for lt in p.list_types}
        exported_before = state.has_run(ctx.wh, conn, seg.name, p.name, "exported")
    result = SyncResult(seg.name, p.name, None, "exported", excluded=ctx.membership.excluded,
                        run_id=ctx.run_id)
    small = None if exported_before else p.too_small(ctx.rows)
    if small is not None and not allow_small:
        result.status, result.message, result.pending = "skipped", str(small), ctx.customers
        return _finish(ctx, result, {})
    files: list[PlatformFile] = []
    added, removed, pending = set(), set(), set()
    after: dict[str, dict[str, list[Any] | None]] = {}
    for lt in p.list_types:
        d = diff_rows(synced[lt], ctx.rows.get(lt, {}))
        adds_ok, removes_ok = p.held_back(d.add_rows, d.remove_rows) if exported_before \
            else (True, True)
        after[_file_audience(lt)] = d.after(adds_ok, removes_ok)
        (added if adds_ok else pending).update(d.adding)
        (removed if removes_ok else pending).update(d.removing)
        if removes_ok and d.remove_rows:
            files.append(p.diff_file(lt, d.remove_rows, value_based=ctx.value_based,
                                     what="remove"))
        if adds_ok and d.add_rows:
            files.append(p.diff_file(lt, d.add_rows, value_based=ctx.value_based, what="add"))
    result.added, result.removed, result.pending = len(added), len(removed), len(pending)
    result.message = f"exported: added {len(added)}, removed {len(removed)} customers"
    assert ctx.out_dir is not None
    names = [f"{seg.name}__{_stamp(ctx.now)}__{f.suffix}" for f in files]
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    for name, f in zip(names, files, strict=True):
        (ctx.out_dir / name).write_text(f.content, encoding="utf-8")
        result.files.append(ctx.out_dir / name)
    manifest = build_manifest(
        segment=seg.name, platform=p, files=files, customers=ctx.customers,
        members=len(ctx.membership), excluded=ctx.membership.excluded, added=result.added,
        removed=result.removed, created_at=ctx.now, below_minimum=small is not None,
        file_names=names)
    manifest.update(mode="file", status=result.status, run_id=ctx.run_id,
                    message=result.message)
    manifest["counts"]["pending"] = result.pending
    return _finish(ctx, result, {}, after, manifest)


def _file_audience(list_type: str) -> str:
    return f"{FILE_AUDIENCE}:{list_type}" if list_type else FILE_AUDIENCE


PLATFORMS = DESTINATIONS  # the older name

__all__ = ["DESTINATIONS", "PLATFORMS", "Membership", "SyncResult", "desired_rows", "diff_rows",
           "plan_segment", "refresh_membership", "sync_segment"]


# -- several platforms at once (the CLI's `sync` and the Dagster assets) ----------------------

PLATFORMS_VAR = "VORONKA_AUDIENCE_PLATFORMS"


def segment_platforms(seg: Segment, configured: Sequence[str]) -> list[str]:
    """The configured platforms ``seg`` goes to: all of them, or those of its
    ``destinations:`` (a segment file's choice; an explicit --platform overrides it)."""
    if not seg.destinations:
        return list(configured)
    return [p for p in configured if p in seg.destinations]


def configured_platforms(env: Mapping[str, str]) -> list[str]:
    """The platforms named in VORONKA_AUDIENCE_PLATFORMS (comma-separated), validated."""
    names = [n.strip().lower() for n in env.get(PLATFORMS_VAR, "").split(",") if n.strip()]
    for name in names:
        get_destination(name)  # a clear error naming the known platforms
    return list(dict.fromkeys(names))


def sync_to_platforms(wh: Any, seg: Segment, platforms: Sequence[str], *, now: datetime,
                      out_dir: str | Path | None, file_only: bool = False,
                      allow_small: bool = False, env: Mapping[str, str] | None = None,
                      client_factory: Any = None, dry_run: bool = False,
                      membership: Membership | None = None) -> list[SyncResult]:
    """Sync ``seg`` to each platform: its client from the environment (secrets never leave
    it), or files only (``dry_run``: only plan, see ``plan_segment``). A platform whose client
    cannot be configured fails on its own (status failed, the missing variable named) without
    stopping the others. Results come in the order of ``platforms``.

    Platforms' APIs are synced side by side, one thread each: each waits on its own rate limit
    (a CRM's writes on ~7 requests a second), so in turn the segment took the sum of them,
    and the last segment through the CRM's queue still had every other platform to go. The
    segment's entries and leaves are recorded once first (``refresh_membership``, unless the
    caller passes this run's ``membership``), so the platforms never race to, and every
    platform syncs that membership. On PostgreSQL they go in turn: each sync holds a session
    for its advisory lock beside its working one, and eleven segments times six platforms
    would be ~130 connections, over a default server's 100."""
    from audiences.clients import client_from_env

    make_client = client_factory or (lambda name: client_from_env(name, env))

    def one(name: str) -> SyncResult:
        return _sync_one_platform(wh, seg, name, make_client, now=now, out_dir=out_dir,
                                  file_only=file_only, allow_small=allow_small,
                                  dry_run=dry_run, membership=membership)

    if dry_run:
        return [one(name) for name in platforms]
    if membership is None:
        membership = refresh_membership(wh, seg, now=now)
    if file_only or len(platforms) < 2 or getattr(wh, "kind", None) == "postgres":
        return [one(name) for name in platforms]
    with ThreadPoolExecutor(len(platforms), thread_name_prefix=f"sync-{seg.name}") as pool:
        return list(pool.map(one, platforms))


def _sync_one_platform(wh: Any, seg: Segment, name: str, make_client: Any, *, now: datetime,
                       out_dir: str | Path | None, file_only: bool, allow_small: bool,
                       dry_run: bool, membership: Membership | None) -> SyncResult:
    """``sync_to_platforms`` for one platform."""
    if dry_run:  # the client only names the account; nothing is sent
        try:
            client = None if file_only else make_client(name)
        except ValueError:
            client = None
        try:
            return plan_segment(wh, seg, name, client, now=now)
        finally:
            if client is not None:
                client.close()
    if file_only and not get_destination(name).file_export:
        return SyncResult(seg.name, name, None, "skipped",
                          message=f"{name} has no file mode; configure its API")
    if file_only:
        return sync_segment(wh, seg, name, None, now=now, out_dir=out_dir,
                            allow_small=allow_small, membership=membership)
    try:
        client = make_client(name)
    except ValueError as exc:
        return SyncResult(seg.name, name, None, "failed", message=str(exc))
    with client:
        return sync_segment(wh, seg, name, client, now=now, out_dir=out_dir,
                            allow_small=allow_small, membership=membership)
