"""Labels in Russian and English, and numbers formatted the way each language writes them.

`fmt_number` and `Voronka.fmt` in static/core.js follow the same rules, so a figure the
Python side prints and the one the page shows are the same string."""

import math
from decimal import ROUND_HALF_UP, Decimal

LANGS = ("ru", "en")
THIN_SPACE = "\u2009"
NBSP = "\u00a0"

#: Decimals per unit (money below 100 keeps kopecks/cents, whole roubles above).
DECIMALS = {"money": 0, "count": 0, "percent": 1, "ratio": 2, "days": 1, "hours": 1,
            "months": 1}

UNIT_SUFFIX = {
    "ru": {"money": "₽", "percent": "%", "ratio": "", "count": "", "days": "дн.",
           "hours": "ч", "months": "мес."},
    "en": {"money": "RUB", "percent": "%", "ratio": "", "count": "", "days": "days",
           "hours": "h", "months": "months"},
}

LABELS: dict[str, dict[str, str]] = {
    "title": {"ru": "Voronka: маркетинг и продажи", "en": "Voronka: marketing and sales"},
    "as_of": {"ru": "Данные на", "en": "Data as of"},
    "data_ranges": {"ru": "Диапазоны данных", "en": "Data ranges"},
    "no_data": {"ru": "Нет данных", "en": "No data"},
    "page_missing": {"ru": "Страница ещё не собрана", "en": "This page is not built yet"},
    "built_from": {"ru": "Собрано из опубликованных витрин",
                   "en": "Built from the published marts"},
    "overview": {"ru": "Обзор", "en": "Overview"},
}


def t(key: str, lang: str) -> str:
    """The label for `key` in `lang`; the key itself when there is none (visible, not fatal)."""
    entry = LABELS.get(key)
    if not entry:
        return key
    return entry.get(lang) or entry.get("en") or key


def _group(digits: str, sep: str) -> str:
    """Thousands grouping of a run of digits."""
    out = []
    while len(digits) > 3:
        out.insert(0, digits[-3:])
        digits = digits[:-3]
    out.insert(0, digits)
    return sep.join(out)


def decimals_for(value: float, unit: str) -> int:
    """Money under 100 keeps two decimals (a CPL of 42.50), larger sums are whole."""
    if unit == "money" and abs(value) < 100 and value != int(value):
        return 2
    if unit == "count" and value != int(value):
        return 1
    return DECIMALS.get(unit, 2)


def fmt_number(x: float | int | None, lang: str = "ru", unit: str = "count") -> str:
    """`x` as the language writes it: ru "1 234,5 ₽" (thin-space thousands, comma decimals),
    en "1,234.5 RUB"; percent takes a share (0..1) and shows it x100; None shows "—"."""
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "—"
    value = float(x) * (100 if unit == "percent" else 1)
    places = decimals_for(value, unit)
    # half-up on the exact binary value: what JavaScript's toFixed does in core.js
    text = str(Decimal(abs(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))
    whole, _, frac = text.partition(".")
    thousands, point = (THIN_SPACE, ",") if lang == "ru" else (",", ".")
    body = _group(whole, thousands) + (point + frac if frac else "")
    negative = value < 0 and float(text) != 0
    body = (("−" if lang == "ru" else "-") if negative else "") + body
    suffix = UNIT_SUFFIX.get(lang, UNIT_SUFFIX["en"]).get(unit, "")
    if not suffix:
        return body
    return body + suffix if unit == "percent" else body + NBSP + suffix
