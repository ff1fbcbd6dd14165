"""Audience segments: YAML definitions a marketer edits, compiled to parameterised SQL.

A segment file (``audiences/segments/*.yml``)::

    name: lapsed_90_days
    description: Bought before, nothing for 90 days or more.
    kind: dynamic            # static (frozen at creation) | dynamic (recomputed every run)
    value: revenue           # optional: numeric column for a value-based look-alike seed
    conditions:              # ANDed
      - {field: recency, op: ">=", value: 90}
      - any:                 # ORed
          - {field: channel, op: in, value: [organic, direct]}
          - {field: orders_count, op: ">", value: 1}
      - bought_category_within_days: {category: Outerwear, days: 30}
      - top_share: {field: revenue, share: 0.1}
      - birthday_within_days: {days: 7}   # where the birthday is known
      - {field: p_alive_change_30d, op: "<", value: 0}   # a prediction field (below)
    actions:                 # optional, at most 5: CRM work per member (audiences.actions_spec)
      - task: {text: "Напомнить о повторной покупке: {{ product_category }}", due_in_days: 0,
               responsible: customer_manager}   # or a CRM user id
      - deal: {pipeline: "Повторные продажи", stage: first}
    destinations: [amocrm, unisender]   # optional: only these of the configured platforms

Predictions: the fields of ``PREDICTION_FIELDS`` (``p_alive``, ``p_alive_change_30d``,
``expected_purchases_90d``, ``expected_purchases_365d``, ``expected_order_value``,
``predicted_value_12m``) are the BG/NBD + Gamma-Gamma columns of
``marts.fct_customer_predictions``; they work in conditions, ``value:`` and ``top_share:`` like
the others. A segment using one reads that table through a left join (a customer without a
prediction matches no condition on it and ranks last in ``top_share``); a segment using none
never touches it, so it runs where no model was ever fitted. Where the table is missing or
empty, such a segment fails with a ``SegmentError`` saying why (the fit's message from
``marts.fct_clv_model_fit``). The look-alike seed ranked by predicted value, not past revenue::

    name: top_10_percent_predicted_value_lookalike
    kind: static
    value: predicted_value_12m
    conditions:
      - top_share: {field: predicted_value_12m, share: 0.1}

Safety: column names come only from ``FIELDS`` (a whitelist of ``marts.dim_customers`` and
``marts.fct_customer_predictions`` columns), operators only from ``OPS``; every value is a
bound parameter (``?`` for DuckDB, ``%s`` for PostgreSQL), never text pasted into the SQL. A
bad field, operator or value raises ``SegmentError`` naming the file, the line and what is
allowed.

Hostile or broken files: a segment file is read with limits (``MAX_FILE_BYTES``, ``MAX_DEPTH``
nesting levels, ``MAX_NODES`` values) before it is parsed, and anchors/aliases (``&a``/``*a``,
the "billion laughs" bomb), merge keys (``<<:``), explicit tags (``!!python/...``), NUL and
other control characters, non-UTF-8 bytes and values YAML cannot build (``2024-02-30``) are each
a ``SegmentError`` naming the file and line. A segment name is 1-64 of ``a-z 0-9 _`` (it is the
Dagster asset key ``audiences/<name>``). ``scan_segments`` reads a directory file by file so one
bad file never hides the others (the Dagster assets use it).

Consent: members are always the contactable customers (``dim_customers.is_contactable``);
the ones who match the conditions but are not contactable are only counted
(``Members.excluded_count``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from audiences import actions_spec
from audiences.actions_spec import Action
from predictions.tables import FIT_MODEL, PREDICTIONS_MODEL

SEGMENTS_DIR = Path(__file__).resolve().parent / "segments"
CUSTOMERS = "marts.dim_customers"
ORDERS = "marts.fct_orders"
AS_OF = "(select max(as_of_date) from intermediate.int_as_of_date)"
# written by the predictions asset (orchestration.assets.predictions)
PREDICTIONS_SCHEMA, PREDICTIONS_TABLE, FIT_TABLE = "marts", PREDICTIONS_MODEL, FIT_MODEL
PREDICTIONS = f"{PREDICTIONS_SCHEMA}.{PREDICTIONS_TABLE}"
PREDICTIONS_JOIN = f"left join {PREDICTIONS} as p on p.customer_id = d.customer_id"

# field -> (dim_customers column, type); type one of int | number | text | date | bool.
CUSTOMER_FIELDS: dict[str, tuple[str, str]] = {
    "recency": ("days_since_last_order", "int"),
    "days_since_last_order": ("days_since_last_order", "int"),
    "orders_count": ("orders_count", "int"),
    "revenue": ("revenue", "number"),
    "gross_margin": ("gross_margin", "number"),
    "aov": ("aov", "number"),
    "rfm_segment": ("rfm_segment", "text"),
    "recency_score": ("recency_score", "int"),
    "frequency_score": ("frequency_score", "int"),
    "monetary_score": ("monetary_score", "int"),
    "channel": ("channel", "text"),
    "cohort_month": ("cohort_month", "date"),
    "first_order_date": ("first_order_date", "date"),
    "last_order_date": ("last_order_date", "date"),
    "expected_next_order_date": ("expected_next_order_date", "date"),
    "expected_next_order_basis": ("expected_next_order_basis", "text"),
    "days_until_expected_order": ("days_until_expected_order", "int"),
    "repurchase_status": ("repurchase_status", "text"),
    "is_due": ("is_due", "bool"),
    "is_overdue": ("is_overdue", "bool"),
    "is_active": ("is_active", "bool"),
    "is_churned": ("is_churned", "bool"),
}
# field -> (fct_customer_predictions column, type); p_alive_change_30d < 0 = p_alive falling
PREDICTION_FIELDS: dict[str, tuple[str, str]] = {
    "p_alive": ("p_alive", "number"),
    "p_alive_change_30d": ("p_alive_change_30d", "number"),
    "expected_purchases_90d": ("expected_purchases_90d", "number"),
    "expected_purchases_365d": ("expected_purchases_365d", "number"),
    "expected_order_value": ("expected_order_value", "number"),
    "predicted_value_12m": ("predicted_value_12m", "number"),
}
FIELDS: dict[str, tuple[str, str]] = {**CUSTOMER_FIELDS, **PREDICTION_FIELDS}

COMPARE = ("=", "!=", "<", "<=", ">", ">=")
OPS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "int": (*COMPARE, "in", "not_in", "between"),
    "number": (*COMPARE, "in", "not_in", "between"),
    "date": (*COMPARE, "in", "not_in", "between"),
    "text": ("=", "!=", "in", "not_in"),
    "bool": ("is_true", "is_false"),
}
OPS = (*COMPARE, "in", "not_in", "between", "is_true", "is_false")
VALUE_FIELDS = tuple(f for f, (_, t) in FIELDS.items() if t in ("int", "number"))
DERIVED = ("bought_category_within_days", "top_share", "birthday_within_days")
MAX_BIRTHDAY_DAYS = 366
KINDS = ("static", "dynamic")
TOP_KEYS = ("name", "description", "kind", "value", "conditions", "actions", "destinations")
NAME_RE = re.compile(r"[a-z0-9_]{1,64}")
MAX_FILE_BYTES = 64 * 1024  # the shipped segments are < 1 KiB
MAX_DEPTH = 24  # nesting levels: 12 levels of ``any:`` inside each other
MAX_NODES = 5_000  # values, lists and mappings in one file
YAML_MERGE_TAG = "tag:yaml.org,2002:merge"
PREVIEW_COLUMNS = ("customer_id", "channel", "cohort_month", "orders_count", "revenue",
                   "rfm_segment")


class SegmentError(ValueError):
    """A segment file that cannot be used; the message names the file, line and what is
    allowed."""


class PredictionsUnavailable(SegmentError):
    """A segment on prediction fields while no customer predictions are published (the CLV
    model did not fit or has not run): the segment cannot be computed, nothing else is
    wrong."""


@dataclass(frozen=True)
class Condition:
    """One leaf: a whitelisted field, an operator and its (typed) value(s)."""

    field: str
    op: str
    value: Any = None
    line: int = 0


@dataclass(frozen=True)
class BoughtCategory:
    """An order of one of `categories` within the last `days` days up to the as-of date."""

    categories: tuple[str, ...]
    days: int
    line: int = 0


@dataclass(frozen=True)
class TopShare:
    """The top `share` of CONTACTABLE customers by `field` (descending, ties by customer_id):
    the same ranking as marts.fct_lookalike_seed. On a prediction field customers without a
    prediction rank last (they still count in the share's base)."""

    field: str
    share: float
    line: int = 0


@dataclass(frozen=True)
class BirthdayWithin:
    """A known birthday (dim_customers.birthday_month/_day) on one of the `days` + 1 days
    from the as-of date on. A 29 February birthday matches only in leap years."""

    days: int
    line: int = 0


@dataclass(frozen=True)
class AnyOf:
    """Conditions ORed."""

    conditions: tuple[Any, ...]
    line: int = 0


@dataclass(frozen=True)
class Segment:
    name: str
    description: str
    kind: str
    conditions: tuple[Any, ...]
    file: str = "<string>"
    value: str | None = None
    actions: tuple[Action, ...] = ()
    destinations: tuple[str, ...] = ()  # () = every configured platform


@dataclass(frozen=True)
class Members:
    """Contactable members of a segment, and how many matching customers were excluded."""

    segment: str
    customer_ids: tuple[str, ...]
    excluded_count: int
    values: tuple[float, ...] | None = None  # aligned with customer_ids when segment.value

    def __len__(self) -> int:
        return len(self.customer_ids)

    def frame(self) -> pd.DataFrame:
        """customer_id (and value, for a value-based segment), one row per member."""
        data: dict[str, Any] = {"customer_id": list(self.customer_ids)}
        if self.values is not None:
            data["value"] = list(self.values)
        return pd.DataFrame(data)


# -- parsing ---------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.loader = yaml.SafeLoader(text)

    def fail(self, node: yaml.Node | None, problem: str) -> SegmentError:
        line = node.start_mark.line + 1 if node is not None else 1
        return SegmentError(f"{self.file}, line {line}: {problem}")

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "expected a single value, not a list or mapping")
        try:
            return self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            # 2024-02-30 matches YAML's date pattern and then fails to build
            problem = getattr(exc, "problem", None) or str(exc)
            what = "a date (YYYY-MM-DD)" if node.tag.endswith(":timestamp") else "a value"
            raise self.fail(node, f"{node.value!r} is not {what}: {problem}") from None

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping (key: value)")
        out = []
        for key_node, value_node in node.value:
            if key_node.tag == YAML_MERGE_TAG:
                raise self.fail(key_node, "merge keys (<<:) are not allowed; write the keys out")
            key = self.scalar(key_node)
            if not isinstance(key, str):
                raise self.fail(key_node, f"{what}: keys must be names, got {key!r}")
            out.append((key, key_node, value_node))
        return out

    def parse(self) -> Segment:
        try:
            root = self.loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 1
            raise SegmentError(f"{self.file}, line {line}: not valid YAML: {exc}") from None
        finally:
            self.loader.dispose()
        if root is None:
            raise SegmentError(f"{self.file}, line 1: empty segment file")
        items = self.mapping(root, "a segment")
        seen: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, key_node, value_node in items:
            if key not in TOP_KEYS:
                raise self.fail(key_node, f"unknown key {key!r}; allowed: {', '.join(TOP_KEYS)}")
            if key in seen:
                raise self.fail(key_node, f"key {key!r} given twice")
            seen[key] = (key_node, value_node)
        for required in ("name", "kind", "conditions"):
            if required not in seen:
                raise self.fail(root, f"missing {required!r}; a segment needs name, kind "
                                      "(static|dynamic) and conditions")
        name = self.scalar(seen["name"][1])
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise self.fail(seen["name"][1], f"name {name!r} is not allowed: use 1-64 of "
                                             "a-z, 0-9 and _ (it is the asset key "
                                             "audiences/<name>)")
        description = self.scalar(seen["description"][1]) if "description" in seen else ""
        kind = self.scalar(seen["kind"][1])
        if kind not in KINDS:
            raise self.fail(seen["kind"][1], f"kind {kind!r} is not allowed; allowed: "
                                             f"{', '.join(KINDS)}")
        value = None
        if "value" in seen:
            value = self.scalar(seen["value"][1])
            if value not in VALUE_FIELDS:
                raise self.fail(seen["value"][1], f"value {value!r} is not a numeric "
                                                  f"field; allowed: "
                                                  f"{', '.join(VALUE_FIELDS)}")
        cond_node = seen["conditions"][1]
        if not isinstance(cond_node, yaml.SequenceNode) or not cond_node.value:
            raise self.fail(cond_node, "conditions must be a non-empty list")
        conditions = tuple(self.condition(n) for n in cond_node.value)
        actions = self.actions(seen["actions"][1]) if "actions" in seen else ()
        destinations = (self.destinations(seen["destinations"][1]) if "destinations" in seen
                        else ())
        return Segment(name=name, description=str(description or "").strip(),
                       kind=kind, conditions=conditions, file=self.file, value=value,
                       actions=actions, destinations=destinations)

    def destinations(self, node: yaml.Node) -> tuple[str, ...]:
        """The platforms this segment goes to (of those configured): known names, no repeat."""
        from audiences.destinations import DESTINATIONS

        known = ", ".join(sorted(DESTINATIONS))
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.fail(node, f"destinations must be a non-empty list of: {known}")
        names: list[str] = []
        for item in node.value:
            name = self.scalar(item)
            if name not in DESTINATIONS:
                raise self.fail(item, f"unknown destination {name!r}; allowed: {known}")
            if name in names:
                raise self.fail(item, f"destination {name!r} given twice")
            names.append(name)
        return tuple(names)

    def actions(self, node: yaml.Node) -> tuple[Action, ...]:
        help_ = (f"actions is a list of at most {actions_spec.MAX_ACTIONS} items, each "
                 "task: {text, due_in_days, responsible, task_type} or "
                 "deal: {pipeline, stage, name, responsible}")
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, help_)
        if len(node.value) > actions_spec.MAX_ACTIONS:
            raise self.fail(node.value[actions_spec.MAX_ACTIONS],
                            f"more than {actions_spec.MAX_ACTIONS} actions; {help_}")
        return tuple(self.action(n, help_) for n in node.value)

    def action(self, node: yaml.Node, help_: str) -> Action:
        items = self.mapping(node, "an action")
        if len(items) != 1 or items[0][0] not in actions_spec.ACTION_KEYS:
            where = items[0][1] if items else node
            kinds = [k for k, _, _ in items]
            unknown = [k for k in kinds if k not in actions_spec.ACTION_KEYS]
            problem = (f"unknown action kind {unknown[0]!r}" if unknown
                       else f"an action has exactly one kind, got {', '.join(kinds) or 'none'}")
            raise self.fail(where, f"{problem}; {help_}")
        kind, _, body = items[0]
        cls, checks = actions_spec.ACTION_KEYS[kind]
        allowed = ", ".join(checks)
        values: dict[str, Any] = {}
        for key, key_node, value_node in self.mapping(body, f"{kind}: {{{allowed}}}"):
            if key not in checks:
                raise self.fail(key_node, f"unknown {kind} key {key!r}; allowed: {allowed}")
            if key in values:
                raise self.fail(key_node, f"{kind} key {key!r} given twice")
            if key in actions_spec.TEMPLATE_KEYS and not isinstance(value_node,
                                                                   yaml.ScalarNode):
                raise self.fail(value_node, f"{kind} {key} must be a text; quote a template "
                                            f"that starts with {{{{: {key}: \"{{{{ segment }}}}"
                                            f" ...\"")
            raw = self.scalar(value_node)
            try:
                values[key] = checks[key](raw)
            except ValueError as exc:
                raise self.fail(value_node, f"{kind} {key}: {exc}") from None
        for required in actions_spec.REQUIRED_KEYS[kind]:
            if required not in values:
                raise self.fail(body, f"{kind} needs {required}; allowed keys: {allowed}")
        return cls(**values)

    def condition(self, node: yaml.Node) -> Any:
        items = self.mapping(node, "a condition")
        keys = [k for k, _, _ in items]
        line = node.start_mark.line + 1
        allowed = (f"a condition is {{field, op, value}} with field one of "
                   f"{', '.join(FIELDS)}; or any: [conditions]; or one of {', '.join(DERIVED)}")
        if len(items) == 1 and keys[0] in ("any", *DERIVED):
            key, _, value_node = items[0]
            if key == "any":
                if not isinstance(value_node, yaml.SequenceNode) or not value_node.value:
                    raise self.fail(value_node, "any: must be a non-empty list of conditions")
                return AnyOf(tuple(self.condition(n) for n in value_node.value), line)
            if key == "bought_category_within_days":
                return self.bought_category(value_node, line)
            if key == "birthday_within_days":
                return self.birthday_within(value_node, line)
            return self.top_share(value_node, line)
        by_key = {k: (kn, vn) for k, kn, vn in items}
        for k, kn, _ in items:
            if k not in ("field", "op", "value"):
                raise self.fail(kn, f"unknown condition key {k!r}; {allowed}")
        if "field" not in by_key or "op" not in by_key:
            raise self.fail(node, f"a condition needs field and op; {allowed}")
        fname = self.scalar(by_key["field"][1])
        if fname not in FIELDS:
            raise self.fail(by_key["field"][1], f"unknown field {fname!r}; allowed fields: "
                                                f"{', '.join(FIELDS)}")
        ftype = FIELDS[fname][1]
        op = self.scalar(by_key["op"][1])
        if op not in OPS_BY_TYPE[ftype]:
            raise self.fail(by_key["op"][1], f"operator {op!r} is not allowed for {fname} "
                                             f"({ftype}); allowed: "
                                             f"{' '.join(OPS_BY_TYPE[ftype])}")
        if op in ("is_true", "is_false"):
            if "value" in by_key:
                raise self.fail(by_key["value"][1], f"{op} takes no value")
            return Condition(fname, op, None, line)
        if "value" not in by_key:
            raise self.fail(node, f"operator {op} needs a value ({_type_help(ftype)})")
        value_node = by_key["value"][1]
        if op in ("in", "not_in", "between"):
            if not isinstance(value_node, yaml.SequenceNode) or not value_node.value:
                raise self.fail(value_node, f"{op} needs a list of values "
                                            f"({_type_help(ftype)})")
            values = tuple(self.typed(n, fname, ftype) for n in value_node.value)
            if op == "between" and len(values) != 2:
                raise self.fail(value_node, "between needs exactly two values: [low, high]")
            return Condition(fname, op, values, line)
        return Condition(fname, op, self.typed(value_node, fname, ftype), line)

    def typed(self, node: yaml.Node, fname: str, ftype: str) -> Any:
        raw = self.scalar(node)
        bad = self.fail(node, f"{fname} needs {_type_help(ftype)}, got {raw!r}")
        if ftype in ("int", "number"):
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise bad
            if ftype == "int" and isinstance(raw, float):
                if not raw.is_integer():
                    raise bad
                raw = int(raw)
            return raw
        if ftype == "text":
            if not isinstance(raw, str):
                raise bad
            return raw
        if ftype == "date":
            if isinstance(raw, dt.datetime):
                raise bad
            if isinstance(raw, dt.date):
                return raw
            if isinstance(raw, str):
                try:
                    return dt.date.fromisoformat(raw)
                except ValueError:
                    raise bad from None
            raise bad
        raise bad  # pragma: no cover - bool fields take no value

    def bought_category(self, node: yaml.Node, line: int) -> BoughtCategory:
        help_ = "bought_category_within_days: {category: text or [texts], days: whole number > 0}"
        items = {k: (kn, vn) for k, kn, vn in self.mapping(node, help_)}
        for k, (kn, _) in items.items():
            if k not in ("category", "days"):
                raise self.fail(kn, f"unknown key {k!r}; allowed: {help_}")
        if set(items) != {"category", "days"}:
            raise self.fail(node, f"needs category and days; {help_}")
        cat_node = items["category"][1]
        if isinstance(cat_node, yaml.SequenceNode):
            cats = tuple(self.scalar(n) for n in cat_node.value)
        else:
            cats = (self.scalar(cat_node),)
        if not cats or not all(isinstance(c, str) and c for c in cats):
            raise self.fail(cat_node, f"category must be text; {help_}")
        days = self.scalar(items["days"][1])
        if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
            raise self.fail(items["days"][1], f"days must be a whole number > 0, got "
                                              f"{days!r}; {help_}")
        return BoughtCategory(cats, days, line)

    def birthday_within(self, node: yaml.Node, line: int) -> BirthdayWithin:
        help_ = f"birthday_within_days: {{days: whole number 0..{MAX_BIRTHDAY_DAYS}}}"
        items = {k: (kn, vn) for k, kn, vn in self.mapping(node, help_)}
        for k, (kn, _) in items.items():
            if k != "days":
                raise self.fail(kn, f"unknown key {k!r}; allowed: {help_}")
        if "days" not in items:
            raise self.fail(node, f"needs days; {help_}")
        days = self.scalar(items["days"][1])
        if isinstance(days, bool) or not isinstance(days, int) \
                or not 0 <= days <= MAX_BIRTHDAY_DAYS:
            raise self.fail(items["days"][1], f"days must be a whole number 0.."
                                              f"{MAX_BIRTHDAY_DAYS}, got {days!r}; {help_}")
        return BirthdayWithin(days, line)

    def top_share(self, node: yaml.Node, line: int) -> TopShare:
        help_ = (f"top_share: {{field: one of {', '.join(VALUE_FIELDS)}, "
                 f"share: number in (0, 1]}}")
        items = {k: (kn, vn) for k, kn, vn in self.mapping(node, help_)}
        for k, (kn, _) in items.items():
            if k not in ("field", "share"):
                raise self.fail(kn, f"unknown key {k!r}; allowed: {help_}")
        if set(items) != {"field", "share"}:
            raise self.fail(node, f"needs field and share; {help_}")
        fname = self.scalar(items["field"][1])
        if fname not in VALUE_FIELDS:
            raise self.fail(items["field"][1], f"unknown numeric field {fname!r}; {help_}")
        share = self.scalar(items["share"][1])
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise self.fail(items["share"][1], f"share must be a number in (0, 1], got "
                                               f"{share!r}; {help_}")
        return TopShare(fname, float(share), line)


def _type_help(ftype: str) -> str:
    return {
        "int": "a whole number",
        "number": "a number",
        "text": "a text",
        "date": "a date (YYYY-MM-DD)",
        "bool": "no value (is_true / is_false)",
    }[ftype]


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _check_events(events: Any, file: str) -> None:
    """Walk the YAML event stream (iterative: no recursion) before any node is built, so a
    nesting bomb, an alias bomb or a tag never reaches the composer or the constructor."""
    depth = nodes = 0
    for event in events:
        where = f"{file}, line {event.start_mark.line + 1}"
        if isinstance(event, yaml.AliasEvent):
            raise SegmentError(f"{where}: aliases (*{event.anchor}) are not allowed; write the "
                               "value out")
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            raise SegmentError(f"{where}: anchors (&{event.anchor}) are not allowed; write the "
                               "value out")
        if isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
            if event.tag is not None:
                raise SegmentError(f"{where}: tags ({event.tag}) are not allowed")
            nodes += 1
            if nodes > MAX_NODES:
                raise SegmentError(f"{where}: more than {MAX_NODES} values in one segment file")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise SegmentError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def check_segment_text(text: str, file: str = "<string>") -> None:
    """Refuse, with file and line, what PyYAML would crash on, hang on or build unsafely:
    oversize text, NUL and control characters, anchors/aliases, tags, deep nesting."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise SegmentError(f"{file}, line 1: {size} bytes; a segment file is at most "
                           f"{MAX_FILE_BYTES} bytes")
    nul = text.find("\x00")
    if nul >= 0:
        raise SegmentError(f"{file}, line {_line_of(text, nul)}: a NUL byte is not allowed")
    try:
        _check_events(yaml.parse(text, Loader=yaml.SafeLoader), file)
    except yaml.reader.ReaderError as exc:
        raise SegmentError(f"{file}, line {_line_of(text, exc.position)}: character "
                           f"{chr(exc.character)!r} is not allowed (a control character)") \
            from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise SegmentError(f"{file}, line {line}: not valid YAML: {exc.problem or exc}") \
            from None


def parse_segment(text: str, file: str = "<string>") -> Segment:
    """A segment from YAML text; `file` names it in errors."""
    check_segment_text(text, file)
    return _Parser(text, file).parse()


def read_segment_text(path: str | Path) -> str:
    """The text of a segment file: at most MAX_FILE_BYTES read, UTF-8 (a BOM is allowed)."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would block, /dev/zero never ends
        raise SegmentError(f"{path}, line 1: not a regular file")
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SegmentError(f"{path}, line 1: cannot read the segment file: "
                           f"{exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SegmentError(f"{path}, line 1: larger than {MAX_FILE_BYTES} bytes; a segment "
                           "file is a few lines of YAML")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SegmentError(f"{path}, line {line}: not UTF-8 text (byte "
                           f"0x{data[exc.start]:02x}); save the file as UTF-8") from None


def load_segment(path: str | Path) -> Segment:
    return parse_segment(read_segment_text(path), str(path))


@dataclass(frozen=True)
class BadSegmentFile:
    """A segment file that cannot be used: `name` is the segment name it seems to define (its
    ``name:`` line, else the file name made a valid name) so the flag lands where the
    segment would be."""

    file: str
    name: str
    message: str


@dataclass(frozen=True)
class SegmentScan:
    segments: tuple[Segment, ...]
    bad: tuple[BadSegmentFile, ...]


NAME_LINE_RE = re.compile(r"""^name:[ \t]*["']?([a-z0-9_]{1,64})["']?[ \t]*(?:#.*)?$""",
                          re.MULTILINE)


def _name_hint(path: Path) -> str:
    """The segment name a (possibly broken) file seems to define; never parses YAML."""
    head = ""
    try:
        if path.is_file():
            with path.open("rb") as fh:
                head = fh.read(MAX_FILE_BYTES).decode("utf-8", "replace")
    except OSError:
        pass
    match = NAME_LINE_RE.search(head)
    if match:
        return match.group(1)
    return re.sub(r"[^a-z0-9_]+", "_", path.stem.lower()).strip("_")[:64] or "unnamed"


def _segment_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(path.glob("*.yml")) + sorted(path.glob("*.yaml"))
    return [path]


def scan_segments(path: str | Path | None = None) -> SegmentScan:
    """Every segment of a directory (default: the shipped examples) or of one file, each file
    read on its own: the good ones, and the bad ones with their error. Two files with the same
    segment name are both bad (which one is meant cannot be told)."""
    path = Path(path) if path is not None else SEGMENTS_DIR
    by_name: dict[str, list[Segment]] = {}
    bad: list[BadSegmentFile] = []
    for f in _segment_files(path):
        try:
            seg = load_segment(f)
        except SegmentError as exc:
            bad.append(BadSegmentFile(str(f), _name_hint(f), str(exc)))
            continue
        by_name.setdefault(seg.name, []).append(seg)
    good = []
    for name, segs in sorted(by_name.items()):
        if len(segs) == 1:
            good.append(segs[0])
            continue
        for seg in segs:
            others = ", ".join(s.file for s in segs if s is not seg)
            bad.append(BadSegmentFile(seg.file, name, f"{seg.file}, line 1: segment name "
                                                      f"{name!r} is also used by {others}"))
    return SegmentScan(tuple(good), tuple(sorted(bad, key=lambda b: b.file)))


def load_segments(path: str | Path | None = None) -> list[Segment]:
    """Every segment of a directory or file, by name; any bad file is an error (all of them
    named). The Dagster assets use `scan_segments`, which keeps the good ones."""
    scan = scan_segments(path)
    if scan.bad:
        raise SegmentError("\n".join(b.message for b in scan.bad))
    return list(scan.segments)


def get_segment(name: str, path: str | Path | None = None) -> Segment:
    """The segment `name`, even when other files of the directory are bad."""
    scan = scan_segments(path)
    for seg in scan.segments:
        if seg.name == name:
            return seg
    own = [b.message for b in scan.bad if b.name == name]
    if own:
        raise SegmentError("\n".join(own))
    unreadable = f"; {len(scan.bad)} segment file(s) cannot be read" if scan.bad else ""
    raise SegmentError(f"no segment named {name!r}; known: "
                       f"{', '.join(s.name for s in scan.segments) or '(none)'}{unreadable}")


# -- compiling -------------------------------------------------------------------------------


def _marker(backend: Any) -> str:
    kind = backend if isinstance(backend, str) else getattr(backend, "kind", None)
    if kind == "duckdb":
        return "?"
    if kind in ("postgres", "postgresql"):
        return "%s"
    raise ValueError(f"unknown warehouse backend {backend!r}; expected duckdb or postgres")


def _param_value(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))  # exact decimal comparison with numeric columns
    return value


def _month_day(date_sql: str) -> str:
    """month * 100 + day of a date expression: 1231 for 31 December."""
    return f"(extract(month from {date_sql}) * 100 + extract(day from {date_sql}))"


def _column(field: str) -> str:
    """A field's column, qualified by the alias of its table in the compiled query."""
    column = FIELDS[field][0]
    return f"p.{column}" if field in PREDICTION_FIELDS else f"d.{column}"


def _condition_fields(cond: Any) -> list[str]:
    if isinstance(cond, AnyOf):
        return [f for c in cond.conditions for f in _condition_fields(c)]
    if isinstance(cond, Condition | TopShare):
        return [cond.field]
    return []


def prediction_fields(seg: Segment, columns: Sequence[str] = ()) -> tuple[str, ...]:
    """The prediction fields `seg` reads (conditions, value) plus those among `columns`: when
    there is one, the segment needs marts.fct_customer_predictions."""
    used = [f for c in seg.conditions for f in _condition_fields(c)]
    used += [seg.value] if seg.value else []
    used += list(columns)
    return tuple(dict.fromkeys(f for f in used if f in PREDICTION_FIELDS))


def _top_share_sql(cond: TopShare, share: str) -> str:
    """Customers in the top `share` of the contactable ones by the field; nulls rank last
    (a customer without a prediction, on both backends: PostgreSQL puts them first by
    default in a descending order)."""
    column = FIELDS[cond.field][0]
    if cond.field in PREDICTION_FIELDS:
        source = (f"{CUSTOMERS} as c left join {PREDICTIONS} as tp "
                  "on tp.customer_id = c.customer_id")
        order = f"tp.{column} desc nulls last, c.customer_id"
    else:
        source, order = f"{CUSTOMERS} as c", f"c.{column} desc, c.customer_id"
    return (f"d.customer_id in (select customer_id from (select c.customer_id, "
            f"row_number() over (order by {order}) as top_rank, "
            f"count(*) over () as top_n from {source} where c.is_contactable) as t "
            f"where top_rank <= ceil(cast({share} as numeric(18, 9)) * top_n))")


class _Compiler:
    def __init__(self, mark: str) -> None:
        self.mark = mark
        self.params: list[Any] = []

    def bind(self, value: Any) -> str:
        self.params.append(_param_value(value))
        return self.mark

    def expr(self, cond: Any) -> str:
        if isinstance(cond, AnyOf):
            return "(" + " or ".join(self.expr(c) for c in cond.conditions) + ")"
        if isinstance(cond, BoughtCategory):
            cats = ", ".join(self.bind(c) for c in cond.categories)
            days = self.bind(cond.days)
            return (f"exists (select 1 from {ORDERS} as o where o.customer_id = d.customer_id "
                    f"and o.product_category in ({cats}) "
                    f"and o.order_date <= {AS_OF} "
                    f"and o.order_date > {AS_OF} - cast({days} as integer))")
        if isinstance(cond, BirthdayWithin):
            days = self.bind(cond.days)
            window_day = f"{AS_OF} + cast(window_days.k as integer)"
            # dim_customers publishes month and day only (the date of birth stays private)
            return ("d.birthday_month is not null and d.birthday_day is not null and "
                    "(d.birthday_month * 100 + d.birthday_day) in "
                    f"(select {_month_day(window_day)} from generate_series(0, "
                    f"cast({days} as integer)) as window_days(k))")
        if isinstance(cond, TopShare):
            return _top_share_sql(cond, self.bind(cond.share))
        column = _column(cond.field)
        op = cond.op
        if op == "is_true":
            return f"{column} is true"
        if op == "is_false":
            return f"{column} is false"
        if op in ("in", "not_in"):
            marks = ", ".join(self.bind(v) for v in cond.value)
            return f"{column} {'in' if op == 'in' else 'not in'} ({marks})"
        if op == "between":
            low, high = cond.value
            return f"{column} between {self.bind(low)} and {self.bind(high)}"
        sql_op = "<>" if op == "!=" else op
        assert sql_op in COMPARE or sql_op == "<>"
        return f"{column} {sql_op} {self.bind(cond.value)}"


def compile_segment(seg: Segment, backend: Any,
                    columns: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """SQL over marts.dim_customers selecting every customer matching the conditions
    (contactable or not): customer_id, is_contactable, value (if the segment has one) and
    `columns` (fields from FIELDS or dim_customers columns from PREVIEW_COLUMNS), ordered by
    customer_id. marts.fct_customer_predictions is joined only when a prediction field is
    used. `backend`: "duckdb" | "postgres" or a Warehouse. Values are bound parameters only."""
    comp = _Compiler(_marker(backend))
    where = " and ".join(comp.expr(c) for c in seg.conditions)
    allowed = {CUSTOMER_FIELDS[f][0] for f in CUSTOMER_FIELDS} | set(PREVIEW_COLUMNS)
    extra = []
    for col in columns:
        if col in PREDICTION_FIELDS:
            extra.append(_column(col))
            continue
        col = CUSTOMER_FIELDS[col][0] if col in CUSTOMER_FIELDS else col
        if col not in allowed:
            raise SegmentError(f"column {col!r} is not selectable; allowed: "
                               f"{', '.join(sorted(allowed | set(PREDICTION_FIELDS)))}")
        if col not in ("customer_id", "is_contactable"):
            extra.append(f"d.{col}")
    select = ["d.customer_id", "d.is_contactable"]
    if seg.value:
        select.append(f"{_column(seg.value)} as value")
    select += extra
    join = f" {PREDICTIONS_JOIN}" if prediction_fields(seg, columns) else ""
    sql = (f"select {', '.join(select)} from {CUSTOMERS} as d{join} where {where} "
           f"order by d.customer_id")
    return sql, comp.params


def _run(wh: Any, sql: str, params: Sequence[Any]) -> pd.DataFrame:
    with wh.connect() as conn:
        cur = conn.cursor()
        cur.execute(sql, list(params))
        cols = [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=cols)


def _table_exists(wh: Any, schema: str, table: str) -> bool:
    mark = _marker(wh)
    frame = _run(wh, "select count(*) from information_schema.tables "
                     f"where table_schema = {mark} and table_name = {mark}", [schema, table])
    return int(frame.iloc[0, 0]) > 0


def _latest_build(wh: Any, model: str) -> str | None:
    """Where the pipeline's latest build of a mart is, when not in marts (PostgreSQL builds
    into marts_build and publishes only what passed its checks)."""
    try:
        table = wh.mart_table(model)
    except Exception:  # a hint only (see _fit_message)
        return None
    return None if table == f"{PREDICTIONS_SCHEMA}.{model}" else table


def _fit_message(wh: Any) -> str | None:
    """The status and message of the latest CLV fit (PostgreSQL: its build in marts_build,
    else the published one), or None when there is none or it cannot be read."""
    for table in (_latest_build(wh, FIT_TABLE), f"{PREDICTIONS_SCHEMA}.{FIT_TABLE}"):
        try:
            if not table or not _table_exists(wh, *table.split(".", 1)):
                continue
            frame = _run(wh, f"select status, message from {table} "
                             f"where group_name = {_marker(wh)}", ["total"])
        except Exception:  # only a hint for the message; duckdb and psycopg2 raise their
            continue       # own error classes (an older table without these columns...)
        if len(frame):
            status, message = frame.iloc[0]
            return f"{table} says: {status}: {message or '(no message)'}"
    return None


def check_predictions(wh: Any, seg: Segment, columns: Sequence[str] = ()) -> None:
    """Raise a SegmentError when `seg` uses prediction fields and the predictions are not
    published (the model did not fit, or has not run): a clear message, not a SQL error
    about a missing table or a segment silently empty."""
    fields = prediction_fields(seg, columns)
    if not fields:
        return
    if not _table_exists(wh, PREDICTIONS_SCHEMA, PREDICTIONS_TABLE):
        state = "does not exist"
    elif _run(wh, f"select 1 from {PREDICTIONS} limit 1", []).empty:
        state = "is empty"
    else:
        return
    fit = _fit_message(wh) or (f"{PREDICTIONS_SCHEMA}.{FIT_TABLE} does not exist either: the "
                               "predictions asset has not run")
    raise PredictionsUnavailable(
        f"segment {seg.name!r} ({seg.file}) uses prediction fields ({', '.join(fields)}) but "
        f"the customer predictions are not published: {PREDICTIONS} {state}. The CLV model "
        f"did not fit or has not run yet; {fit}")


def segment_frame(wh: Any, seg: Segment, columns: Sequence[str] = ()) -> pd.DataFrame:
    """Every customer matching the conditions, with is_contactable (for counts and
    previews; exports use `segment_members`). A segment on prediction fields needs the
    published predictions (`check_predictions`)."""
    check_predictions(wh, seg, columns)
    sql, params = compile_segment(seg, wh, columns)
    frame = _run(wh, sql, params)
    frame["is_contactable"] = frame["is_contactable"].astype(bool)
    return frame


def segment_members(wh: Any, seg: Segment) -> Members:
    """The contactable members of `seg` in the warehouse `wh`, and how many customers match
    the conditions but are excluded (withdrawn consent or do-not-contact)."""
    frame = segment_frame(wh, seg)
    contactable = frame[frame["is_contactable"]]
    values = None
    if seg.value:
        # a customer without a prediction has no value (None or NaN): 0 for the seed
        values = tuple(float(v) if pd.notna(v) else 0.0 for v in contactable["value"])
    return Members(
        segment=seg.name,
        customer_ids=tuple(str(c) for c in contactable["customer_id"]),
        excluded_count=int((~frame["is_contactable"]).sum()),
        values=values,
    )
