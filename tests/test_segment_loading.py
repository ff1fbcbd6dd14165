"""Segment files cannot take the pipeline down (issue 12, item 9).

A segment file is written by a marketer, or by whoever can write to VORONKA_SEGMENTS_DIR: a bad
name, a YAML alias bomb, deep nesting, merge keys, an impossible date, a NUL byte, a tag or an
oversize file is each rejected with the file and line, quickly, and one bad file never stops
the Dagster definitions from loading nor the other segments' assets from running.

New names of audiences.segments are looked up inside the tests, so on the code before the fix
each test fails on its own assertion rather than the whole module on an import.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import dagster as dg
import pytest

from audiences import segments
from audiences.segments import SegmentError, parse_segment

GOOD = ("name: {name}\ndescription: test\nkind: dynamic\nconditions:\n"
        "  - {{field: orders_count, op: '=', value: 1}}\n")


def error_of(text: str, file: str = "bad.yml") -> str:
    with pytest.raises(SegmentError) as info:
        parse_segment(text, file)
    return str(info.value)


@pytest.mark.parametrize("name", ["Lapsed 90", "lapsed-90", "лапсед", "a/b", "x" * 65, "''",
                                  "123abc!"])
def test_a_name_outside_a_z_0_9_underscore_is_rejected_with_file_and_line(name: str) -> None:
    msg = error_of(f"description: d\nname: {name}\nkind: dynamic\nconditions:\n"
                   "  - {field: is_due, op: is_true}\n")
    assert msg.startswith("bad.yml, line 2: name "), msg
    assert "a-z, 0-9 and _" in msg


def test_a_valid_name_is_kept_as_written() -> None:
    assert parse_segment(GOOD.format(name="win_back_2026"), "ok.yml").name == "win_back_2026"


def bomb(levels: int, fanout: int) -> str:
    """Billion laughs: each level an `any:` of `fanout` aliases of the level below."""
    lines = ["name: bomb", "kind: dynamic", "conditions:",
             "  - any: &l0 [" + ", ".join(["{field: recency, op: '>=', value: 1}"] * fanout)
             + "]"]
    for level in range(1, levels):
        lines.append(f"  - any: &l{level} [" + ", ".join([f"{{any: *l{level - 1}}}"] * fanout)
                     + "]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_rejected_at_its_first_anchor_in_no_time() -> None:
    msg = error_of(bomb(levels=5, fanout=4))  # ~1,400 conditions: accepted before the fix
    assert msg.startswith("bad.yml, line 4: anchors (&l0) are not allowed"), msg
    started = time.perf_counter()
    msg = error_of(bomb(levels=10, fanout=10))  # 10^10 conditions if expanded
    assert time.perf_counter() - started < 1.0
    assert "line 4: anchors (&l0)" in msg
    msg = error_of("name: a\nkind: dynamic\nconditions:\n  - {field: recency, op: '>=', "
                   "value: 1}\n  - *x\n")
    assert msg.startswith("bad.yml, line 5: aliases (*x) are not allowed"), msg


def test_merge_keys_are_rejected_with_file_and_line() -> None:
    msg = error_of("name: a\nkind: dynamic\nconditions:\n"
                   "  - <<: {field: recency, op: '>=', value: 90}\n")
    assert msg.startswith("bad.yml, line 4: merge keys (<<:) are not allowed"), msg


@pytest.mark.parametrize("value", ["2024-02-30", "'2024-02-30'", "2023-13-01"])
def test_an_impossible_date_is_rejected_with_file_and_line(value: str) -> None:
    msg = error_of("name: a\nkind: dynamic\nconditions:\n  - {field: recency, op: '>=', "
                   f"value: 1}}\n  - {{field: first_order_date, op: '>=', value: {value}}}\n")
    assert msg.startswith("bad.yml, line 5: "), msg
    assert "2023-13-01" in msg or "2024-02-30" in msg


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("name: a\nkind: dynamic\nconditions:\n  - {field: channel, op: '=', value: 'x\x00'}\n",
     4, "a NUL byte is not allowed"),
    ("name: a\x00\nkind: dynamic\nconditions: []\n", 1, "a NUL byte is not allowed"),
    ("name: a\nkind: dynamic\x07\nconditions: []\n", 2, "character '\\x07' is not allowed"),
])
def test_nul_and_control_characters_are_rejected_with_file_and_line(
        text: str, line: int, problem: str) -> None:
    msg = error_of(text)
    assert msg.startswith(f"bad.yml, line {line}: {problem}"), msg


@pytest.mark.parametrize("depth", [30, 5_000])
def test_deep_nesting_is_rejected_with_file_and_line(depth: int) -> None:
    msg = error_of("name: a\nkind: dynamic\nconditions: " + "[" * depth + "]" * depth + "\n")
    assert msg.startswith(f"bad.yml, line 3: nested deeper than {segments.MAX_DEPTH} levels"), msg


def test_nested_any_within_the_depth_limit_still_works() -> None:
    text = "name: a\nkind: dynamic\nconditions:\n"
    for level in range(5):
        text += "  " * level + "  - any:\n"
    text += "  " * 5 + "  - {field: recency, op: '>=', value: 90}\n"
    seg = parse_segment(text, "ok.yml")
    sql, params = segments.compile_segment(seg, "duckdb")
    assert params == [90] and sql.count("(") >= 5


def test_tags_are_rejected_with_file_and_line() -> None:
    msg = error_of("name: a\nkind: dynamic\nconditions:\n"
                   "  - {field: channel, op: '=', value: !!python/object:os.system x}\n")
    assert msg.startswith("bad.yml, line 4: tags ("), msg


def test_too_many_values_and_oversize_files_are_rejected(tmp_path: Path) -> None:
    many = ("name: a\nkind: dynamic\nconditions:\n  - {field: channel, op: in, value: ["
            + ", ".join(["x"] * (segments.MAX_NODES + 10)) + "]}\n")
    assert f"more than {segments.MAX_NODES} values" in error_of(many)
    big = tmp_path / "big.yml"
    big.write_text(GOOD.format(name="big") + "# padding\n" * 100_000)  # ~1 MB of comments
    with pytest.raises(SegmentError, match=r"big\.yml, line 1: larger than 65536 bytes"):
        segments.load_segment(big)


def test_a_file_that_is_not_utf8_is_rejected_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "cp1251.yml"
    path.write_bytes(GOOD.format(name="a").replace("test", "тест").encode("cp1251"))
    with pytest.raises(SegmentError, match=r"cp1251\.yml, line 2: not UTF-8 text"):
        segments.load_segment(path)


# -- a directory with good and bad files --------------------------------------------------------


BAD_FILES = {
    "bad_name.yml": GOOD.format(name="'Lapsed 90 days!'"),
    "bomb.yml": bomb(levels=5, fanout=4),
    "nul.yml": GOOD.format(name="nul_byte").replace("test", "te\x00st"),
    "date.yml": "name: bad_date\nkind: dynamic\nconditions:\n"
                "  - {field: first_order_date, op: '>=', value: 2024-02-30}\n",
    "twin_a.yml": GOOD.format(name="twin"),
    "twin_b.yml": GOOD.format(name="twin"),
}


@pytest.fixture
def segments_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped segments plus one_time (good) and every kind of bad file."""
    folder = tmp_path / "segments"
    shutil.copytree(segments.SEGMENTS_DIR, folder)
    (folder / "one_time.yml").write_text(GOOD.format(name="one_time"))
    for name, text in BAD_FILES.items():
        (folder / name).write_text(text)
    monkeypatch.setenv("VORONKA_SEGMENTS_DIR", str(folder))
    return folder


def shipped_names() -> set[str]:
    return {p.stem for p in segments.SEGMENTS_DIR.glob("*.yml")}


def test_load_segments_names_every_bad_file_and_get_segment_still_finds_a_good_one(
        segments_dir: Path) -> None:
    with pytest.raises(SegmentError) as info:
        segments.load_segments(segments_dir)
    for name in BAD_FILES:
        assert f"{segments_dir / name}, line " in str(info.value)
    assert segments.get_segment("one_time", segments_dir).name == "one_time"
    with pytest.raises(SegmentError, match=r"twin_a\.yml, line 1: segment name 'twin' is also"):
        segments.get_segment("twin", segments_dir)


def audience_keys(assets: list[dg.AssetsDefinition]) -> set[str]:
    return {key.path[1] for a in assets for key in a.keys}


def test_definitions_load_with_bad_segment_files_and_flag_each_one(
        segments_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration.definitions import build_defs

    monkeypatch.setenv("AMOCRM_SUBDOMAIN", "acme")
    defs = build_defs()
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert "raw/amocrm__leads" in keys  # extraction still loads
    audiences = {k.split("/", 1)[1] for k in keys if k.startswith("audiences/")}
    dynamic = {s.name for s in segments.load_segments() if s.kind == "dynamic"}
    # good segments, and one flag per bad file under the name it meant (or its file name)
    assert audiences == dynamic | {"one_time", "bad_name", "bomb", "nul_byte", "bad_date", "twin"}
    assert shipped_names() >= dynamic


class TinyShop:
    """marts.dim_customers with four customers: two with one order (the `one_time` segment)."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from warehouse.duckdb_backend import DuckDBWarehouse

        path = folder / "warehouse.duckdb"
        monkeypatch.setenv("VORONKA_WAREHOUSE", "duckdb")
        monkeypatch.setenv("VORONKA_DUCKDB_PATH", str(path))
        monkeypatch.setenv("VORONKA_AUDIENCES_DIR", str(folder / "audiences"))
        monkeypatch.delenv("VORONKA_AUDIENCE_PLATFORMS", raising=False)
        self.wh = DuckDBWarehouse(path, folder / "voronka.duckdb")
        statements = [
            "create schema marts", "create schema intermediate",
            "create table marts.dim_customers (customer_id varchar, orders_count integer, "
            "days_since_last_order integer, is_contactable boolean)",
            "insert into marts.dim_customers values ('c1', 1, 10, true), ('c2', 1, 100, true), "
            "('c3', 2, 10, true), ('c4', 1, 10, false)",
            "create table marts.fct_orders (customer_id varchar, order_date date, "
            "product_category varchar)",
            "create table intermediate.int_as_of_date (as_of_date date)",
            "insert into intermediate.int_as_of_date values ('2026-11-22')",
            "create table intermediate.int_customer_identifiers (customer_id varchar, "
            "kind varchar, value_normalized varchar)",
            "insert into intermediate.int_customer_identifiers values "
            "('c1', 'phone', '+79160000001'), ('c2', 'phone', '+79160000002')",
        ]
        with self.wh.connect() as conn:
            for sql in statements:
                conn.cursor().execute(sql)


def test_a_bad_segment_fails_only_its_own_asset_naming_file_and_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration.assets.audiences import build_audience_assets
    from orchestration.resources import WarehouseResource

    folder = tmp_path / "segments"
    folder.mkdir()
    (folder / "one_time.yml").write_text(GOOD.format(name="one_time"))
    (folder / "nul.yml").write_text(GOOD.format(name="nul_byte").replace("test", "te\x00st"))
    (folder / "bad_name.yml").write_text(GOOD.format(name="'Bad Name'"))
    monkeypatch.setenv("VORONKA_SEGMENTS_DIR", str(folder))
    TinyShop(tmp_path, monkeypatch)
    assets = build_audience_assets()
    assert audience_keys(assets) == {"one_time", "nul_byte", "bad_name"}
    result = dg.materialize(assets, resources={"warehouse": WarehouseResource()},
                            raise_on_error=False)
    done = {m.asset_key.path[1]: m.metadata
            for m in (ev.event_specific_data.materialization for ev in result.all_events
                      if ev.is_step_materialization)}
    assert set(done) == {"one_time"} and done["one_time"]["members"].value == 2
    failures = {ev.step_key: str(ev.event_specific_data.error)
                for ev in result.all_events if ev.is_step_failure}
    assert len(failures) == 2
    text = "\n".join(failures.values())
    assert f"{folder / 'nul.yml'}, line 2: a NUL byte is not allowed" in text
    assert f"{folder / 'bad_name.yml'}, line 1: name 'Bad Name' is not allowed" in text


def test_a_missing_segments_dir_is_flagged_not_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration.assets.audiences import build_audience_assets

    monkeypatch.setenv("VORONKA_SEGMENTS_DIR", str(tmp_path / "no_such_dir"))
    assets = build_audience_assets()
    assert audience_keys(assets) == {"no_such_dir"}
    assert "cannot read the segment file" in (assets[0].descriptions_by_key[
        dg.AssetKey(["audiences", "no_such_dir"])] or "")


def test_cli_list_shows_the_good_segments_and_names_each_bad_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from audiences import cli as audiences_cli

    folder = tmp_path / "segments"
    folder.mkdir()
    (folder / "one_time.yml").write_text(GOOD.format(name="one_time"))
    (folder / "bomb.yml").write_text(bomb(levels=5, fanout=4))
    shop = TinyShop(tmp_path, monkeypatch)
    assert audiences_cli.cmd_list(shop.wh, str(folder)) == 1
    out, err = capsys.readouterr()
    assert "one_time" in out and "1 segments" in out
    assert f"{folder / 'bomb.yml'}, line 4: anchors (&l0) are not allowed" in err
