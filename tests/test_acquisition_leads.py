"""Acquisition vs repeat leads (issue 13 point 3, and the Cv flags of point 4), against the truth.

The shared `marts` build (seed 7, DuckDB and PostgreSQL) is compared with
synthetic/truth_acquisition.py, which classifies every inquiry from the simulator's own model
(amoCRM `Lead.is_repeat`, Bitrix24 deals in the repeat category, and the person's orders
before the inquiry), never from the payloads or the marts. Checked: the pipeline kinds, the
acquisition / repeat / all leads and open acquisition leads per channel-month and per
campaign-month, CPL and Cv on acquisition leads with the all-leads figures beside them,
month_complete and cv_immature. The editable seed and the "before" rule's edge cases are dbt
unit tests (int_pipeline_kinds, int_lead_kinds), run by the same build.
"""

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import pytest
from _support import MartsBuild

from synthetic import catalog as C

OPEN_LEAD_SHARE_MAX = 0.1  # dbt var open_lead_share_max (default)
LEAD_COLUMNS = ["acquisition_leads", "repeat_leads", "all_leads", "open_acquisition_leads"]


def _day(value: object) -> date:
    return pd.Timestamp(value).date()


def _truth(marts: MartsBuild, name: str) -> pd.DataFrame:
    frame = marts.business.ground_truth.table(name).copy()
    frame["month"] = frame["month"].map(_day)
    return frame


def _mart(marts: MartsBuild, sql: str) -> pd.DataFrame:
    frame = marts.df(sql)
    frame["month"] = frame["month"].map(_day)
    return frame


def _keyed(frame: pd.DataFrame, keys: list[str]) -> dict[tuple, dict]:
    return {tuple(row[k] for k in keys): row for row in frame.to_dict("records")}


def _money(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), ROUND_HALF_UP)


@pytest.fixture(scope="module")
def acquisition(marts: MartsBuild) -> pd.DataFrame:
    return _acquisition(marts)


def test_own_nodes_passed(marts: MartsBuild) -> None:
    """Models, data tests and the seed / before-rule unit tests all passed."""
    ran = [n for fragment in ("int_pipeline_kinds", "int_lead_kinds", "pipeline_kinds",
                              "fct_acquisition_monthly", "fct_campaign_performance_monthly")
           for n in marts.assert_nodes_passed(fragment)]
    for unit_test in ("pipeline_kinds_seed_then_name_then_default",
                      "lead_kinds_repeat_pipeline_or_existing_customer",
                      "cac_is_null_when_spend_buys_no_customers"):
        assert any(n.startswith("unit_test.") and n.endswith(unit_test) for n in ran), unit_test


def test_repeat_pipelines_are_the_simulators(marts: MartsBuild) -> None:
    """The name default finds exactly the pipelines the simulator puts repeat sales in."""
    kinds = marts.df("select crm, pipeline_id, pipeline_kind, pipeline_kind_basis "
                     "from intermediate.int_pipeline_kinds")
    repeat = {(r.crm, r.pipeline_id) for r in kinds.itertuples() if r.pipeline_kind == "repeat"}
    assert repeat == {("amocrm", str(C.REPEAT_PIPELINE_ID)), ("bitrix24", "deal_1")}
    assert set(kinds.pipeline_kind_basis) >= {"name", "default", "seed"}


def _acquisition(build: MartsBuild) -> pd.DataFrame:
    return _mart(build, "select * from marts.fct_acquisition_monthly")


def check_channel_leads(marts: MartsBuild, acquisition: pd.DataFrame) -> None:
    """Acquisition / repeat / all / open acquisition leads per channel-month = the truth."""
    truth = _keyed(_truth(marts, "acq_leads_by_channel_month"), ["month", "channel"])
    rows = acquisition[(acquisition.channel != "all") & (acquisition.all_leads > 0)]
    got = {}
    for row in rows.to_dict("records"):
        share = row["open_acquisition_lead_share"]
        got[(row["month"], row["channel"])] = {
            "acquisition_leads": row["acquisition_leads"], "repeat_leads": row["repeat_leads"],
            "all_leads": row["all_leads"],
            "open_acquisition_leads": 0 if pd.isna(share)
            else round(share * row["acquisition_leads"])}
    assert set(got) == set(truth)
    for key, want in truth.items():
        assert {c: int(got[key][c]) for c in LEAD_COLUMNS} == {c: int(want[c])
                                                                for c in LEAD_COLUMNS}, key


def test_leads_per_channel_month_equal_the_truth(marts: MartsBuild,
                                                 acquisition: pd.DataFrame) -> None:
    check_channel_leads(marts, acquisition)
    # the data exercises both repeat rules
    kinds = marts.df("select lead_kind_reason, count(*) as n from marts.fct_leads group by 1")
    assert set(kinds.lead_kind_reason) == {"repeat_pipeline", "existing_customer",
                                           "new_inquiry"}


def test_leads_per_campaign_month_equal_the_truth(marts: MartsBuild) -> None:
    truth = _keyed(_truth(marts, "acq_leads_by_campaign_month"),
                   ["month", "channel", "campaign_id"])
    mart = _mart(marts, "select month, channel, campaign_id, acquisition_leads, repeat_leads, "
                        "all_leads from marts.fct_campaign_performance_monthly "
                        "where campaign_id is not null and all_leads > 0")
    got = _keyed(mart, ["month", "channel", "campaign_id"])
    assert set(got) == set(truth)
    for key, want in truth.items():
        for column in ("acquisition_leads", "repeat_leads", "all_leads"):
            assert int(got[key][column]) == int(want[column]), (key, column)


def check_cpl_and_cv(marts: MartsBuild, acquisition: pd.DataFrame) -> None:
    """CPL = truth spend / truth acquisition leads; Cv = truth customers whose first lead is an
    acquisition lead of the month / acquisition leads; the all-leads figures beside them."""
    leads = _keyed(_truth(marts, "acq_leads_by_channel_month"), ["month", "channel"])
    converted = _keyed(_truth(marts, "acq_converted_by_channel_month"), ["month", "channel"])
    spend = _keyed(_truth(marts, "spend_by_channel_month"), ["month", "channel"])
    checked_cpl = differs = 0
    for row in acquisition[acquisition.channel != "all"].to_dict("records"):
        key = (row["month"], row["channel"])
        n = leads.get(key, {"acquisition_leads": 0, "all_leads": 0})
        conv = converted.get(key, {"customers_from_month_leads": 0,
                                   "customers_from_month_acquisition_leads": 0})
        acq, every = int(n["acquisition_leads"]), int(n["all_leads"])
        want_cv = conv["customers_from_month_acquisition_leads"] / acq if acq else None
        want_cv_all = conv["customers_from_month_leads"] / every if every else None
        for column, want in (("cv", want_cv), ("cv_all_leads", want_cv_all)):
            if want is None:
                assert pd.isna(row[column]), (key, column)
            else:
                assert row[column] == pytest.approx(want, rel=1e-12), (key, column)
        cost = float(spend[key]["spend"]) if key in spend else 0.0
        if row["spend_covered"] and acq:
            assert Decimal(str(row["cpl"])) == _money(cost / acq), key
            assert Decimal(str(row["cpl_all_leads"])) == _money(cost / every), key
            checked_cpl += 1
            differs += row["cpl"] != row["cpl_all_leads"]
    assert checked_cpl > 0 and differs > 0  # repeat leads make the all-leads CPL cheaper


def test_cpl_and_cv_use_acquisition_leads(marts: MartsBuild, acquisition: pd.DataFrame) -> None:
    check_cpl_and_cv(marts, acquisition)


def check_flags(marts: MartsBuild, acquisition: pd.DataFrame) -> None:
    """month_complete from the as-of date; cv_immature from the truth's open leads."""
    as_of = _day(marts.df("select as_of_date from intermediate.int_as_of_date").iloc[0, 0])
    leads = _keyed(_truth(marts, "acq_leads_by_channel_month"), ["month", "channel"])
    immature = 0
    for row in acquisition[acquisition.channel != "all"].to_dict("records"):
        month = row["month"]
        next_month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        assert bool(row["month_complete"]) == (next_month <= as_of), month
        n = leads.get((month, row["channel"]))
        acq = int(n["acquisition_leads"]) if n else 0
        share = int(n["open_acquisition_leads"]) / acq if acq else None
        assert bool(row["cv_immature"]) == (share is not None and share > OPEN_LEAD_SHARE_MAX)
        immature += bool(row["cv_immature"])
    assert immature > 0
    latest = acquisition[(acquisition.channel == "all")].sort_values("month").iloc[-1]
    assert not latest.month_complete and latest.month == as_of.replace(day=1)


def test_month_complete_and_cv_immature(marts: MartsBuild, acquisition: pd.DataFrame) -> None:
    check_flags(marts, acquisition)


def test_second_business_equals_its_truth(marts_alt: MartsBuild) -> None:
    """The same checks on the second business (seed 11, scale 0.15, mid-month as-of date)."""
    marts_alt.assert_nodes_passed("int_lead_kinds")
    acquisition = _acquisition(marts_alt)
    check_channel_leads(marts_alt, acquisition)
    check_cpl_and_cv(marts_alt, acquisition)
    check_flags(marts_alt, acquisition)
