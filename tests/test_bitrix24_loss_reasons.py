"""Bitrix24 loss reasons (issue 13 point 6; docs metrics.md "Funnel"), DuckDB and PostgreSQL.

Bitrix24 says why a deal or lead failed by which failure (`F`) stage it ended in: the simulated
portal has several per funnel (LOSE "Сделка провалена", APOLOGY "Анализ причины провала", a
custom one; leads: JUNK and a custom status), and some deals being analysed carry the reason in
a string user field. Expectations come from the simulator's own records (the stage each lost
deal/lead ended in, the names in the synthetic catalog), never from the warehouse's parsing.
- fct_leads / fct_funnel_loss_reasons carry the failure stage's name as the loss reason (the
  default, var `bitrix24_loss_reason_field` null); no Bitrix24 loss-reason row is null.
- With the var naming the user field, staging reads its text (checked with `dbt show`, which
  runs the model's SQL with the var without touching the shared build; DuckDB), and a var that
  is not a user field name is refused. How int_crm__leads_unioned prefers the field over the
  stage name is a dbt unit test (_int_crm__leads_unioned__loss_reasons.yml), run on both.
- The loss stages come from a separate RNG stream: nothing else in the payloads moves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from _support import DBT_PROJECT, MartsBuild

import synthetic
from synthetic import catalog as C
from synthetic.bitrix24 import Bitrix24Brand, semantic

FIELD = C.B24_LOSS_REASON_FIELD


def _stage_names() -> dict[str, dict[str, str]]:
    """pipeline_id (as the warehouse keys it) -> stage id -> name, from the catalog."""
    out = {"lead": {s[0]: s[1] for s in C.B24_LEAD_STATUSES}}
    out |= {f"deal_{cat}": {s[0]: s[1] for s in stages}
            for cat, stages in C.B24_DEAL_STAGES.items()}
    return out


def _truth_lost(business) -> pd.DataFrame:
    """Every lost Bitrix24 record at the simulation's end: lead_id, pipeline_id, the failure
    stage it ended in and that stage's name (the default loss reason), from the simulator."""
    b24 = business.ground_truth._sim.b24
    names = _stage_names()
    rows = [(f"bitrix24_deal_{d.id}", f"deal_{d.category}", d.stage,
             names[f"deal_{d.category}"][d.stage], b24.loss_reason_texts.get(d.seq))
            for d in b24.deals if semantic(d.stage) == "F"]
    rows += [(f"bitrix24_lead_{x.id}", "lead", x.status, names["lead"][x.status], None)
             for x in b24.leads if x.deal is None and semantic(x.status) == "F"]
    return pd.DataFrame(rows, columns=["lead_id", "pipeline_id", "stage", "reason",
                                       "field_text"])


def test_loss_reason_nodes_pass(marts: MartsBuild) -> None:
    for node in ("stg_bitrix24__deals", "stg_bitrix24__leads", "int_crm__leads_unioned",
                 "fct_funnel_loss_reasons", "fct_leads"):
        marts.assert_nodes_passed(node)
    assert marts.assert_nodes_passed(
        "bitrix24_loss_reason_is_the_user_field_else_the_failure_stage")


def test_the_simulated_portal_loses_into_several_failure_stages(marts: MartsBuild) -> None:
    lost = _truth_lost(marts.business)
    per_funnel = lost.groupby("pipeline_id")["stage"].nunique()
    assert per_funnel["deal_0"] >= 3 and per_funnel["lead"] >= 2
    assert lost["field_text"].notna().any()
    # the field is filled only while the failure is analysed (an APOLOGY stage)
    assert lost.loc[lost["field_text"].notna(), "stage"].str.endswith("APOLOGY").all()


def test_each_lost_bitrix24_record_has_its_failure_stage_as_reason(marts: MartsBuild) -> None:
    truth = _truth_lost(marts.business).set_index("lead_id")
    leads = marts.df("select lead_id, is_lost, loss_reason_name from marts.fct_leads "
                     "where crm = 'bitrix24'")
    lost = leads[leads["is_lost"].astype(bool)].set_index("lead_id")
    assert set(lost.index) == set(truth.index)
    assert lost["loss_reason_name"].to_dict() == truth["reason"].to_dict()
    assert leads.loc[~leads["is_lost"].astype(bool), "loss_reason_name"].isna().all()


def test_drop_off_by_reason_counts_the_simulators_lost_records(marts: MartsBuild) -> None:
    mart = marts.df("select pipeline_id, loss_reason_name, leads_lost "
                    "from marts.fct_funnel_loss_reasons where crm = 'bitrix24'")
    assert mart["loss_reason_name"].notna().all(), "a Bitrix24 loss reason is never null here"
    got = {(p, r): int(n) for (p, r), n in
           mart.groupby(["pipeline_id", "loss_reason_name"])["leads_lost"].sum().items()}
    truth = _truth_lost(marts.business)
    expected = dict(Counter(zip(truth["pipeline_id"], truth["reason"], strict=True)))
    assert got == expected
    assert len({r for p, r in got if p == "deal_0"}) >= 3


def _dbt_show(marts: MartsBuild, tmp_path: Path, model: str, vars_: dict) -> tuple[int, str]:
    """`dbt show` of one model with `vars_`: runs its SQL over the shared build's sources
    without writing a relation (own target and log dirs)."""
    cmd = [str(Path(sys.executable).with_name("dbt")), "show", "-s", model,
           "--vars", json.dumps(vars_), "--limit", "-1", "--output", "json", "--quiet",
           "--project-dir", str(DBT_PROJECT), "--profiles-dir", str(DBT_PROJECT),
           "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
    proc = subprocess.run(cmd, cwd=marts.workdir, env={**os.environ, **marts.env},
                          capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


# the var's plumbing is backend-independent and json_str is tested on both backends by every
# staging model: DuckDB only (a `dbt show` costs ~15 s of the suite's time budget)
@pytest.mark.parametrize("marts", ["duckdb"], indirect=True)
def test_a_configured_user_field_is_read_as_the_loss_reason(marts: MartsBuild,
                                                            tmp_path: Path) -> None:
    code, out = _dbt_show(marts, tmp_path, "stg_bitrix24__deals",
                          {"bitrix24_loss_reason_field": FIELD})
    assert code == 0, out[-3000:]
    rows = json.loads(out[out.index("{"):])["show"]
    got = {f"bitrix24_deal_{r['deal_id']}": r["loss_reason_field_value"] for r in rows
           if r["loss_reason_field_value"] is not None}
    truth = _truth_lost(marts.business)
    expected = dict(zip(truth["lead_id"], truth["field_text"], strict=True))
    assert got == {k: v for k, v in expected.items() if isinstance(v, str)}
    assert got


# refused at compile time, before any backend runs: DuckDB only (the suite's time budget)
@pytest.mark.parametrize("marts", ["duckdb"], indirect=True)
def test_a_loss_reason_field_that_is_not_a_user_field_is_refused(marts: MartsBuild,
                                                                 tmp_path: Path) -> None:
    code, out = _dbt_show(marts, tmp_path, "stg_bitrix24__deals",
                          {"bitrix24_loss_reason_field": "TITLE') or 1=1 --"})
    assert code != 0
    assert "must name a user field" in out


@pytest.fixture(scope="module")
def pair() -> tuple[synthetic.SyntheticBusiness, synthetic.SyntheticBusiness]:
    """One small business with the loss stages spread, and the same without the spread."""
    spread = synthetic.generate(seed=5, scale=0.1)
    original = Bitrix24Brand.assign_loss_stages
    Bitrix24Brand.assign_loss_stages = lambda self, rng: None
    try:
        plain = synthetic.generate(seed=5, scale=0.1)
    finally:
        Bitrix24Brand.assign_loss_stages = original
    return spread, plain


def test_the_loss_stages_come_from_their_own_random_stream(pair) -> None:
    spread, plain = pair
    assert spread.amocrm == plain.amocrm and spread.file_orders == plain.file_orders
    assert spread.yandex_direct == plain.yandex_direct
    for key in ("contacts", "stagehistory", "leads", "deals"):
        a, b = spread.bitrix24[key], plain.bitrix24[key]
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            moved = {k for k in x.keys() | y.keys() if x.get(k) != y.get(k)}
            # only a lost record's stage (and a filled loss-reason field) differs
            assert moved <= {"STAGE_ID", "STATUS_ID", FIELD}, (key, moved)
            if moved:
                assert y.get("STAGE_SEMANTIC_ID", y.get("STATUS_SEMANTIC_ID")) == "F"
    # without the spread every lost record sits in its funnel's first failure stage
    assert {d["STAGE_ID"] for d in plain.bitrix24["deals"]
            if d["STAGE_SEMANTIC_ID"] == "F"} <= {"LOSE", "C1:LOSE"}
    assert {d["STAGE_ID"] for d in spread.bitrix24["deals"]
            if d["STAGE_SEMANTIC_ID"] == "F"} > {"LOSE"}


def test_the_second_business_has_its_failure_stages_as_reasons(marts_alt: MartsBuild) -> None:
    """The same checks on another seed and scale (`marts_alt`, DuckDB)."""
    test_each_lost_bitrix24_record_has_its_failure_stage_as_reason(marts_alt)
    test_drop_off_by_reason_counts_the_simulators_lost_records(marts_alt)
