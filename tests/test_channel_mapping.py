"""The user's channel mapping (VORONKA_CHANNEL_MAPPING): validation with the file, line and field
named; wildcards and most-specific-row-first matching through dbt on DuckDB and PostgreSQL;
the shipped seed when no file was loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from _support import failed_nodes, run_dbt, scratch_warehouse
from conftest import BACKENDS

from warehouse.channel_mapping import (
    DEFAULT_PATH,
    ENV_VAR,
    ChannelMappingError,
    load_channel_mapping,
    mapping_path,
    read_mapping,
)
from warehouse.records import RawRecord

HEADER = "utm_source,utm_medium,channel,description\n"
# a user's file: "vk with any or no medium", a medium-only row, a catch-all, and no-UTM mapped
USER_MAPPING = HEADER + (
    "yandex,cpc,yandex_direct,Direct\n"
    "vk,*,vk_ads,VK with any or no medium\n"
    "vk,organic,organic,VK search results\n"
    "*,organic,organic,\n"
    "telegram,,referral,Telegram posts without a medium\n"
    "*,email,other,\n"
    "*,*,referral,Anything else tagged\n"
)
# lead id -> (utm_source, utm_medium, channel with USER_MAPPING, channel with the shipped seed)
LEADS = {
    1: ("yandex", "cpc", "yandex_direct", "yandex_direct"),
    2: ("vk", None, "vk_ads", "other"),  # the case
    3: ("VK ", "Post", "vk_ads", "other"),  # tags are trimmed and lower-cased
    4: ("vk", "organic", "organic", "organic"),  # exact pair beats vk,*
    5: ("bing", "organic", "organic", "organic"),
    6: (None, "organic", "organic", "organic"),  # '*' matches a missing source
    7: ("telegram", None, "referral", "other"),  # empty cell = the tag is missing
    8: ("telegram", "cpc", "referral", "other"),  # ... so telegram,cpc falls to *,*
    9: ("mail", "email", "other", "other"),
    10: ("habr.com", "referral", "referral", "referral"),
    11: (None, None, "direct", "direct"),  # no UTM at all stays direct (no empty,empty row)
}


def write(tmp_path: Path, text: str, name: str = "mapping.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


# -- validation -------------------------------------------------------------------------------
def test_shipped_mapping_is_valid_and_the_default(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert mapping_path() == DEFAULT_PATH
    rows = read_mapping()
    assert ("*", "organic", "organic") in {(r.utm_source, r.utm_medium, r.channel) for r in rows}


def test_user_file_parses_wildcards_empty_cells_semicolons_and_bom(tmp_path, monkeypatch):
    path = write(tmp_path, "\ufeffUTM_Source;utm_medium;Channel\nVK;*;VK_Ads\n;;organic\n\n"
                           "*;*;other\n", encoding="utf-8")
    monkeypatch.setenv(ENV_VAR, str(path))
    assert mapping_path() == path
    rows = read_mapping()
    assert [(r.utm_source, r.utm_medium, r.channel, r.line) for r in rows] == [
        ("vk", "*", "vk_ads", 2), (None, None, "organic", 3), ("*", "*", "other", 5)]


@pytest.mark.parametrize(("text", "expected"), [
    (HEADER + "vk,cpc,vk_ads\nvk,cpc,telegram_ads\n",
     "line 3, field channel: 'telegram_ads' is not a channel the marts know"),
    (HEADER + "vk,cpc,\n", "line 2, field channel: empty is not a channel"),
    (HEADER + "vk*,cpc,vk_ads\n",
     "line 2, field utm_source: 'vk*' is not valid: '*' must be the whole cell"),
    (HEADER + "vk,paid social,vk_ads\n",
     "line 2, field utm_medium: 'paid social' is not valid: a UTM value has no spaces"),
    (HEADER + "vk,cpc,vk_ads\nyandex,cpc,yandex_direct\nVK,CPC,vk_ads\n",
     "line 4, fields utm_source,utm_medium: the pair 'vk,cpc' is already mapped on line 2"),
    ("utm_source,channel\nvk,vk_ads\n", "line 1: missing column(s) utm_medium"),
    ("utm_source,utm_medium,chanel\nvk,cpc,vk_ads\n", "line 1: missing column(s) channel"),
    (HEADER.replace("description", "comment") + "vk,cpc,vk_ads,x\n",
     "line 1: unknown column 'comment'"),
    (HEADER + "vk,cpc,vk_ads,VK, the ad cabinet\n", "line 2: 5 fields, the header has 4"),
    (HEADER + "vk,cpc\n", "line 2, field channel: missing"),
    (HEADER, "no rows after the header"),
    ("", "empty file"),
])
def test_bad_files_are_refused_naming_file_line_and_field(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ChannelMappingError) as err:
        read_mapping(path)
    assert str(err.value).startswith(f"channel mapping {path}")
    assert expected in str(err.value)


def test_missing_and_non_utf8_files(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "no/such/mapping.csv")
    with pytest.raises(ChannelMappingError, match=f"file not found \\(set {ENV_VAR}"):
        read_mapping()
    path = write(tmp_path, HEADER + "вк,cpc,vk_ads\n", encoding="cp1251")
    with pytest.raises(ChannelMappingError, match="not UTF-8 text"):
        read_mapping(path)


def test_an_invalid_file_leaves_the_loaded_mapping_alone(tmp_path):
    from warehouse.duckdb_backend import DuckDBWarehouse

    wh = DuckDBWarehouse(tmp_path / "w.duckdb", tmp_path / "p.duckdb")
    load_channel_mapping(wh, write(tmp_path, USER_MAPPING))
    with pytest.raises(ChannelMappingError):
        load_channel_mapping(wh, write(tmp_path, HEADER + "vk,cpc,nope\n", "bad.csv"))
    assert wh.scalar("select count(*) from raw.channel_mapping") == 7
    assert wh.scalar("select min(line) from raw.channel_mapping") == 2


# -- matching, through dbt --------------------------------------------------------------------
def bitrix24_leads() -> list[RawRecord]:
    """Bitrix24 leads as the API sends them (every value a string), one per LEADS case."""
    records = []
    for lead_id, (source, medium, _, _) in LEADS.items():
        payload = {"ID": str(lead_id), "TITLE": f"Lead {lead_id}", "STATUS_ID": "NEW",
                   "STATUS_SEMANTIC_ID": "P", "DATE_CREATE": "2026-05-04T10:00:00+03:00",
                   "DATE_MODIFY": "2026-05-04T10:00:00+03:00", "UTM_SOURCE": source or "",
                   "UTM_MEDIUM": medium or ""}
        records.append(RawRecord("bitrix24", "shop.bitrix24.ru", "leads", str(lead_id),
                                 payload))
    return records


def mapped_channels(wh) -> dict[int, str]:
    frame = wh.query_df("select lead_id, channel from intermediate.int_leads__channel_mapped")
    return {int(lead_id.removeprefix("bitrix24_lead_")): channel
            for lead_id, channel in frame.itertuples(index=False)}


def build(workdir: Path, env: dict[str, str], *args: str) -> set[str]:
    """Run dbt; fail with its output unless every node passed; the nodes that ran."""
    code, out, results = run_dbt(workdir, env, *args)
    assert code == 0 and not failed_nodes(results), out[-3000:]
    return {r["unique_id"] for r in results.get("results", [])}


@pytest.mark.parametrize("backend", BACKENDS)
def test_shipped_seed_then_the_users_file_wildcards_most_specific_first(backend, tmp_path):
    """A bare `dbt build` (no raw.channel_mapping loaded) maps by the shipped seed; once the
    user's file is loaded, as the pipeline's raw/channel_mapping step loads it, it decides the
    channel of every lead: exact pair > source,* > *,medium > *,*; an empty cell matches a
    missing tag; no UTM at all stays direct. The rule's dbt unit tests run in the build."""
    with scratch_warehouse(backend, tmp_path, "channels") as (wh, env):
        wh.land(bitrix24_leads(), run_id="test")
        ran = build(tmp_path, env, "build", "--select", "+int_leads__channel_mapped",
                    "int_channel_mapping", "--indirect-selection", "cautious")
        assert {"unit_test.voronka.int_leads__channel_mapped.channel_mapping_rules",
                "unit_test.voronka.int_leads__channel_mapped.channel_mapping_wildcards"} <= ran
        assert mapped_channels(wh) == {k: v[3] for k, v in LEADS.items()}
        assert wh.scalar("select min(origin) from intermediate.int_channel_mapping") == "seed"

        load_channel_mapping(wh, write(tmp_path, USER_MAPPING))
        build(tmp_path, env, "build", "--select", "int_channel_mapping",
              "int_leads__channel_mapped", "--exclude-resource-type", "unit_test")
        assert mapped_channels(wh) == {k: v[2] for k, v in LEADS.items()}
        assert wh.scalar("select min(origin) from intermediate.int_channel_mapping") == "file"

