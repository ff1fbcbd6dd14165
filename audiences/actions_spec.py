"""Segment actions: what a segment asks a CRM to do for each member (issue 15).

A segment file may carry an ``actions:`` list (parsed by audiences.segments)::

    actions:
      - task: {text: "Напомнить о повторной покупке: {{ product_category }}",
               due_in_days: 0, responsible: customer_manager}   # or a CRM user id
      - deal: {pipeline: "Повторные продажи", stage: first}

Texts are templates with ``{{ field }}`` placeholders only, and only the fields of
``TEMPLATE_FIELDS``: no Jinja logic (``{% %}``), no filters (``|``), no attribute access, and
no names, phones, e-mails or ids, so a task or deal title can never carry personal data a
marketer did not see in the warehouse's published marts. A template is checked when the
segment file is parsed, so a bad placeholder fails before any CRM call.

The values come from ``template_context`` (marts.dim_customers and marts.fct_orders, bound
parameters only, the same SQL on DuckDB and PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

CUSTOMERS = "marts.dim_customers"  # = audiences.segments.CUSTOMERS (no import: no cycle)
ORDERS = "marts.fct_orders"

#: whitelisted template field -> what it is (shown in errors and docs). No personal data.
TEMPLATE_FIELDS: dict[str, str] = {
    "product_category": "the product category of the customer's latest order that names one",
    "segment": "the segment name",
    "orders_count": "orders so far",
    "revenue": "revenue to date",
    "aov": "average order value",
    "last_order_date": "date of the latest order (YYYY-MM-DD)",
    "expected_next_order_date": "when the next order is expected (YYYY-MM-DD)",
    "days_until_expected_order": "days from the as-of date to the expected next order",
    "repurchase_status": "upcoming | due | overdue | lapsed",
    "rfm_segment": "RFM segment",
    "channel": "first-touch acquisition channel",
    "days_since_last_order": "days since the latest order",
}
#: dim_customers columns read as-is (every TEMPLATE_FIELDS key but the two computed ones)
DIM_FIELDS = tuple(f for f in TEMPLATE_FIELDS if f not in ("product_category", "segment"))

MAX_TEMPLATE_CHARS = 1000  # a template, and a rendered text (cut)
MAX_ACTIONS = 5
MAX_DUE_DAYS = 365
CUSTOMER_MANAGER = "customer_manager"
CHUNK = 500

PLACEHOLDER_RE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
FIELD_RE = re.compile(r"\s*([a-z_]+)\s*")
JINJA_MARKS = ("{{", "}}", "{%", "%}", "{#", "#}")


def _allowed() -> str:
    return f"allowed fields: {', '.join(TEMPLATE_FIELDS)}"


def _parse_template(template: str) -> list[tuple[str, bool]]:
    """(literal text, False) and (field, True) pieces; ValueError for anything that is not a
    plain ``{{ field }}`` of TEMPLATE_FIELDS."""
    if not isinstance(template, str):
        raise ValueError(f"a template must be a text, got {template!r}")
    pieces: list[tuple[str, bool]] = []
    pos = 0
    for match in PLACEHOLDER_RE.finditer(template):
        literal = template[pos:match.start()]
        _check_literal(literal)
        pieces.append((literal, False))
        inner = match.group(1)
        name = FIELD_RE.fullmatch(inner)
        if name is None:
            shown = inner.strip()
            if "|" in inner:
                why = "filters (|) are not allowed"
            elif "." in inner or "[" in inner:
                why = "attribute or item access is not allowed"
            elif "{" in inner or "%" in inner:
                why = "only {{ field }} is allowed"
            else:
                why = "not a field name"
            raise ValueError(f"template placeholder {{{{ {shown} }}}}: {why}; {_allowed()}")
        if name.group(1) not in TEMPLATE_FIELDS:
            raise ValueError(f"unknown template field {name.group(1)!r}; {_allowed()}")
        pieces.append((name.group(1), True))
        pos = match.end()
    _check_literal(template[pos:])
    pieces.append((template[pos:], False))
    return pieces


def _check_literal(text: str) -> None:
    for mark in JINJA_MARKS:
        if mark in text:
            raise ValueError(f"{mark!r} outside a {{{{ field }}}} placeholder: template logic "
                             f"({{% %}}), comments ({{# #}}) and unclosed placeholders are not "
                             f"allowed; {_allowed()}")


def check_template(template: Any) -> str:
    """`template` if it is a usable template text, else ValueError saying why."""
    if not isinstance(template, str) or not template.strip():
        raise ValueError(f"needs a non-empty text, got {template!r}")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"a template is at most {MAX_TEMPLATE_CHARS} characters, got "
                         f"{len(template)}")
    _parse_template(template)
    return template


def template_fields(template: str) -> list[str]:
    """The ``{{ field }}`` names `template` uses, each once, in order of first use;
    ValueError for a placeholder that is not allowed."""
    seen: list[str] = []
    for piece, is_field in _parse_template(template):
        if is_field and piece not in seen:
            seen.append(piece)
    return seen


def _number(value: Decimal | float) -> str:
    text = format(value if isinstance(value, Decimal) else Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):  # pandas Timestamp too
        return "" if value != value else value.date().isoformat()  # NaT != NaT
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else (str(value) if math.isinf(value) else _number(value))
    if isinstance(value, Decimal):
        return "" if value.is_nan() else _number(value)
    if hasattr(value, "item"):  # a numpy scalar
        return _format(value.item())
    text = str(value)
    return "" if text in ("NaT", "nan", "<NA>") else text


def render(template: str, context: Mapping[str, Any]) -> str:
    """`template` with each ``{{ field }}`` replaced by its value in `context` (None -> "",
    dates YYYY-MM-DD, numbers without a trailing .0), cut to MAX_TEMPLATE_CHARS. ValueError
    for a field that is not allowed or missing from `context`."""
    out = []
    for piece, is_field in _parse_template(template):
        if not is_field:
            out.append(piece)
            continue
        if piece not in context:
            raise ValueError(f"no value for template field {piece!r} in the context")
        out.append(_format(context[piece]))
    text = "".join(out)
    if len(text) > MAX_TEMPLATE_CHARS:
        text = text[:MAX_TEMPLATE_CHARS - 1] + "…"
    return text


# -- actions ----------------------------------------------------------------------------------


def check_due_in_days(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DUE_DAYS:
        raise ValueError(f"due_in_days must be a whole number 0..{MAX_DUE_DAYS}, got {value!r}")
    return value


def check_responsible(value: Any) -> str | int:
    if value == CUSTOMER_MANAGER and isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"responsible must be {CUSTOMER_MANAGER} (the customer's manager in "
                         f"the CRM) or a CRM user id (a positive whole number), got {value!r}")
    return value


def check_task_type(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"task_type must be an amoCRM task type id (1 follow-up, 2 meeting), "
                         f"got {value!r}")
    return value


def check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise ValueError(f"{what} must be a non-empty name of at most 255 characters, got "
                         f"{value!r}")
    return value


@dataclass(frozen=True)
class TaskAction:
    """A CRM task for the member's manager (amoCRM task / Bitrix24 to-do)."""

    text: str  # template
    due_in_days: int = 0  # 0..365 after the run
    responsible: str | int = CUSTOMER_MANAGER  # or a CRM user id
    task_type: int = 1  # amoCRM task_type_id (1 follow-up, 2 meeting); Bitrix24 ignores it
    kind: str = "task"

    def __post_init__(self) -> None:
        check_template(self.text)
        check_due_in_days(self.due_in_days)
        check_responsible(self.responsible)
        check_task_type(self.task_type)


@dataclass(frozen=True)
class DealAction:
    """A deal (amoCRM lead) in a pipeline (Bitrix24: deal category), found by NAME."""

    pipeline: str
    stage: str = "first"  # "first" (the first working stage) or a stage name
    name: str = "{{ segment }}: повторная продажа"  # template (deal title)
    responsible: str | int = CUSTOMER_MANAGER
    kind: str = "deal"

    def __post_init__(self) -> None:
        check_name(self.pipeline, "pipeline")
        check_name(self.stage, "stage")
        check_template(self.name)
        check_responsible(self.responsible)


Action = TaskAction | DealAction

#: action kind -> (class, key -> check(value) returning the value or raising ValueError)
ACTION_KEYS: dict[str, tuple[type, dict[str, Callable[[Any], Any]]]] = {
    "task": (TaskAction, {"text": check_template, "due_in_days": check_due_in_days,
                          "responsible": check_responsible, "task_type": check_task_type}),
    "deal": (DealAction, {"pipeline": lambda v: check_name(v, "pipeline"),
                          "stage": lambda v: check_name(v, "stage"),
                          "name": check_template, "responsible": check_responsible}),
}
REQUIRED_KEYS = {"task": ("text",), "deal": ("pipeline",)}
TEMPLATE_KEYS = ("text", "name")  # the keys whose value is a template


# -- values -----------------------------------------------------------------------------------


def _has_column(cur: Any, wh: Any, table: str, column: str) -> bool:
    schema, name = table.split(".")
    cur.execute(f"select count(*) from information_schema.columns where table_schema = "
                f"{wh._marks(1)} and table_name = {wh._marks(1)} and column_name = "
                f"{wh._marks(1)}", [schema, name, column])
    return bool(cur.fetchone()[0])


def template_context(wh: Any, customer_ids: Sequence[str],
                     segment: str) -> dict[str, dict[str, Any]]:
    """customer_id -> every TEMPLATE_FIELDS value (None where unknown) for the customers of
    `customer_ids` found in marts.dim_customers (others get no entry). product_category is
    that of the latest order naming one (order_date desc, then order_id desc where the table
    has it)."""
    ids = sorted({str(c) for c in customer_ids})
    out: dict[str, dict[str, Any]] = {}
    if not ids:
        return out
    with wh.connect() as conn:
        cur = conn.cursor()
        tie = ", o.order_id desc" if _has_column(cur, wh, ORDERS, "order_id") else ""
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            cur.execute(f"select customer_id, {', '.join(DIM_FIELDS)} from {CUSTOMERS} "
                        f"where customer_id in ({wh._marks(len(chunk))})", chunk)
            for row in cur.fetchall():
                values = dict(zip(("customer_id", *DIM_FIELDS), row, strict=True))
                cid = str(values.pop("customer_id"))
                out[cid] = {"product_category": None, "segment": segment, **values}
            cur.execute(
                f"select customer_id, product_category from (select o.customer_id, "
                f"o.product_category, row_number() over (partition by o.customer_id order by "
                f"o.order_date desc{tie}) as latest from {ORDERS} as o where "
                f"o.product_category is not null and o.product_category <> '' and "
                f"o.customer_id in ({wh._marks(len(chunk))})) as t where latest = 1", chunk)
            for cid, category in cur.fetchall():
                if str(cid) in out:
                    out[str(cid)]["product_category"] = category
    return {cid: {f: ctx[f] for f in TEMPLATE_FIELDS} for cid, ctx in sorted(out.items())}
