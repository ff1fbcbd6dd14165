"""Audience identifiers, per-platform normalisation + hashing, payloads and export files (issue 5).

Each platform's rules (ad_apis.md §B0-B4) are checked on the published self-test vectors and on
tricky raw input (spaces, upper case, the Russian trunk prefix '8 (916) ...', gmail dots and
plus-tags); every written export file and manifest is searched for the raw identifiers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from _support import MartsBuild

from audiences.export import AudienceTooSmall, export_segment_file
from audiences.identifiers import customer_identifiers
from audiences.platforms import (
    PLATFORMS,
    batches,
    google_batches,
    google_members,
    md5_hex,
    meta_batches,
    meta_payload,
    platform_files,
    sha256_hex,
    vk_files,
    vk_lines,
    yandex_csv,
)
from warehouse.duckdb_backend import DuckDBWarehouse

WHEN = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def members(n: int, *, phones: bool = True, emails: bool = True, start: int = 0) -> pd.DataFrame:
    """n customers, each with a distinct valid Moscow mobile and a distinct e-mail."""
    rows = []
    for i in range(start, start + n):
        cid = f"c_{i:06d}"
        if phones:
            rows.append((cid, "phone", f"+7916{i:07d}"))
        if emails:
            rows.append((cid, "email", f"user{i}@example.ru"))
    return pd.DataFrame(rows, columns=["customer_id", "kind", "value"])


# -- hashing: the published vectors --------------------------------------------------------

def test_published_hash_vectors() -> None:
    assert sha256_hex("name@yandex.ru") == (
        "41b86f44151924a940be6fa30d93f2471683ca74ac361d3b827a9b72c80a7623")
    assert sha256_hex("70123456789") == (
        "8f0dd3d30a1ea4b739c6217c02604aee1556025da990212759efd877206a1948")
    assert md5_hex("mail@yandex.ru") == "3c56ff8fef0f6c65b36b2d25720fe276"
    assert md5_hex("79995551111") == "f09f2c3d48f31e2a802944ade2e5aec5"
    # through the platforms: the same vectors from the normalised (and from raw) values
    assert PLATFORMS["yandex"].hashed("email", "name@yandex.ru") == sha256_hex("name@yandex.ru")
    assert PLATFORMS["meta"].hashed("email", " Name@Yandex.RU ") == sha256_hex("name@yandex.ru")
    assert PLATFORMS["vk"].hashed("email", "MAIL@yandex.ru") == "3c56ff8fef0f6c65b36b2d25720fe276"
    assert PLATFORMS["vk"].hashed("phone", "+79995551111") == "f09f2c3d48f31e2a802944ade2e5aec5"
    assert PLATFORMS["vk"].hashed("phone", "8 (999) 555-11-11") == (
        "f09f2c3d48f31e2a802944ade2e5aec5")
    assert all(p.hash("x") == (md5("x") if name == "vk" else sha("x"))
               for name, p in PLATFORMS.items())
    assert {p.hash_algorithm for p in PLATFORMS.values()} == {"SHA256", "MD5"}


def test_empty_strings_are_never_hashed() -> None:
    for fn in (sha256_hex, md5_hex):
        with pytest.raises(ValueError, match="empty"):
            fn("")
    for p in PLATFORMS.values():
        for junk in ("", "   ", "not-an-email", "12", None, float("nan")):
            assert p.hashed("email", junk) == ""
            assert p.hashed("phone", junk) == ""
    with pytest.raises(ValueError, match="kind"):
        PLATFORMS["meta"].hashed("address", "x")


# -- per-platform transforms on tricky input -------------------------------------------------

PHONE_INPUTS = ["+79161234567", "8 (916) 123-45-67", " +7 916 123 45 67 ", "79161234567",
                "8-916-123-45-67"]


@pytest.mark.parametrize("raw", PHONE_INPUTS)
def test_phone_forms_per_platform(raw: str) -> None:
    assert PLATFORMS["meta"].phone(raw) == "79161234567"      # digits, no '+'
    assert PLATFORMS["google"].phone(raw) == "+79161234567"   # E.164 with '+'
    assert PLATFORMS["yandex"].phone(raw) == "79161234567"
    assert PLATFORMS["vk"].phone(raw) == "79161234567"
    assert PLATFORMS["meta"].hashed("phone", raw) == sha("79161234567")
    assert PLATFORMS["google"].hashed("phone", raw) == sha("+79161234567")
    assert PLATFORMS["yandex"].hashed("phone", raw) == sha("79161234567")
    assert PLATFORMS["vk"].hashed("phone", raw) == md5("79161234567")


@pytest.mark.parametrize(("raw", "plain", "google"), [
    # spaces and upper case
    ("  Ivan.Petrov@Mail.RU ", "ivan.petrov@mail.ru", "ivan.petrov@mail.ru"),
    # gmail: dots and +tag dropped for Google only
    ("J.O.Hn.Smith+promo@GMAIL.com", "j.o.hn.smith+promo@gmail.com", "johnsmith@gmail.com"),
    ("first.last+a+b@googlemail.com", "first.last+a+b@googlemail.com",
     "firstlast@googlemail.com"),
    # non-gmail: dots and plus-tags kept everywhere
    ("first.last+news@yandex.ru", "first.last+news@yandex.ru", "first.last+news@yandex.ru"),
    ("a.b@gmail.com.ru", "a.b@gmail.com.ru", "a.b@gmail.com.ru"),
])
def test_email_forms_per_platform(raw: str, plain: str, google: str) -> None:
    for name in ("meta", "yandex", "vk"):
        assert PLATFORMS[name].email(raw) == plain
    assert PLATFORMS["google"].email(raw) == google
    assert PLATFORMS["meta"].hashed("email", raw) == sha(plain)
    assert PLATFORMS["yandex"].hashed("email", raw) == sha(plain)
    assert PLATFORMS["vk"].hashed("email", raw) == md5(plain)
    assert PLATFORMS["google"].hashed("email", raw) == sha(google)


def test_google_removes_inner_whitespace_others_reject_it() -> None:
    assert PLATFORMS["google"].email(" jo hn@Example.com ") == "john@example.com"
    assert PLATFORMS["meta"].email(" jo hn@Example.com ") == ""


# -- payload builders ------------------------------------------------------------------------

def tricky_members() -> pd.DataFrame:
    return pd.DataFrame([
        ("c1", "email", "J.Doe+x@Gmail.com"),
        ("c1", "phone", "8 (916) 123-45-67"),
        ("c1", "phone", "+79161112233"),
        ("c2", "email", "solo@yandex.ru"),
        ("c3", "phone", "+79995551111"),
        ("c4", "email", "junk"),            # no usable identifier at all
    ], columns=["customer_id", "kind", "value"])


def test_meta_payload_rows_and_lookalike_value() -> None:
    frame = tricky_members()
    payload = meta_payload(frame)
    assert payload["schema"] == ["EMAIL", "PHONE"]
    assert payload["data"] == [
        [sha("j.doe+x@gmail.com"), sha("79161234567")],   # first e-mail, first phone
        [sha("solo@yandex.ru"), ""],
        ["", sha("79995551111")],
    ]
    frame["ltv"] = frame["customer_id"].map({"c1": 140, "c2": 44.5, "c3": None, "c4": 1})
    seed = meta_payload(frame, value_column="ltv")
    assert seed["schema"] == ["EMAIL", "PHONE", "LOOKALIKE_VALUE"]
    assert [row[2] for row in seed["data"]] == [140, 44.5, 0]
    json.dumps(seed)  # plain JSON types (no numpy scalars)
    frame.loc[0, "ltv"] = -1
    with pytest.raises(ValueError, match="negative"):
        meta_payload(frame, value_column="ltv")


def test_google_members_one_identifier_each() -> None:
    found = google_members(tricky_members())
    assert found == [
        {"userData": {"userIdentifiers": [{"emailAddress": sha("jdoe@gmail.com")},
                                          {"phoneNumber": sha("+79161234567")},
                                          {"phoneNumber": sha("+79161112233")}]}},
        {"userData": {"userIdentifiers": [{"emailAddress": sha("solo@yandex.ru")}]}},
        {"userData": {"userIdentifiers": [{"phoneNumber": sha("+79995551111")}]}},
    ]
    for member in found:
        assert all(len(ident) == 1 for ident in member["userData"]["userIdentifiers"])


def test_yandex_csv_header_and_rows() -> None:
    rows = list(csv.reader(io.StringIO(yandex_csv(tricky_members()))))
    assert rows == [
        ["phone", "email"],
        [sha("79161234567"), sha("j.doe+x@gmail.com")],
        ["", sha("solo@yandex.ru")],
        [sha("79995551111"), ""],
    ]


def test_vk_one_type_per_list_md5() -> None:
    lines = vk_lines(tricky_members())
    assert lines == {
        "phones": [md5("79161234567"), md5("79161112233"), md5("79995551111")],
        "emails": [md5("j.doe+x@gmail.com"), md5("solo@yandex.ru")],
    }
    assert vk_files(members(3, emails=False)).keys() == {"phones"}
    # the same phone written two ways by two customers is one line
    dup = pd.DataFrame([("a", "phone", "+79161234567"), ("b", "phone", "8 916 123 45 67")],
                       columns=["customer_id", "kind", "value"])
    assert vk_lines(dup)["phones"] == [md5("79161234567")]


def test_batching_to_platform_limits() -> None:
    assert PLATFORMS["meta"].max_batch == PLATFORMS["google"].max_batch == 10_000
    assert [len(b) for b in batches(list(range(25_001)), 10_000)] == [10_000, 10_000, 5_001]
    assert list(batches([], 10)) == []
    with pytest.raises(ValueError):
        list(batches([1], 0))
    frame = members(25)
    meta = meta_batches(meta_payload(frame), size=10)
    assert [len(b["data"]) for b in meta] == [10, 10, 5]
    assert all(b["schema"] == ["EMAIL", "PHONE"] for b in meta)
    assert [row for b in meta for row in b["data"]] == meta_payload(frame)["data"]
    google = google_batches(google_members(frame), size=10)
    assert [len(b["audienceMembers"]) for b in google] == [10, 10, 5]
    assert {b["encoding"] for b in google} == {"HEX"}
    big = google_batches([{"userData": {"userIdentifiers": []}}] * 20_001)
    assert [len(b["audienceMembers"]) for b in big] == [10_000, 10_000, 1]


# -- export files and manifests --------------------------------------------------------------

def raw_needles(frame: pd.DataFrame) -> list[str]:
    """Every raw form an identifier of the frame could leak as."""
    needles = []
    for kind, value in zip(frame["kind"], frame["value"], strict=True):
        if kind == "phone":
            e164 = PLATFORMS["google"].phone(value)
            needles += [e164, e164.lstrip("+"), e164[2:]]
        else:
            needles += [value.lower(), value.split("@")[0].lower()]
    return needles


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_export_writes_only_hashes(tmp_path: Path, platform: str) -> None:
    n = PLATFORMS[platform].min_rows + 5 if platform != "vk" else 2_000
    frame = members(n)
    frame.loc[0, "value"] = "8 (916) 000-00-00"       # raw-looking input on the way in
    frame.loc[1, "value"] = " User0@EXAMPLE.ru "
    result = export_segment_file(frame, platform, tmp_path, "lapsed_90d", excluded_count=7,
                                 created_at=WHEN)
    written = [*result.files, result.manifest_path]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    text = "\n".join(p.read_text() for p in written)
    for needle in raw_needles(frame):
        assert needle not in text, f"{platform}: raw identifier {needle!r} in the export"
    assert "@" not in text and "+7916" not in text
    m = json.loads(result.manifest_path.read_text())
    assert m == result.manifest
    assert m["segment"] == "lapsed_90d" and m["platform"] == platform
    assert m["hash_algorithm"] == ("MD5" if platform == "vk" else "SHA256")
    assert m["created_at"] == "2026-11-23T12:00:00+00:00"
    assert m["below_minimum"] is False
    counts = m["counts"]
    assert counts["customers"] == counts["members"] == counts["added"] == n
    assert counts["removed"] == 0 and counts["excluded"] == 7
    assert counts["without_identifier"] == 0
    assert counts["rows"] == (2 * n if platform == "vk" else n)
    for entry, path in zip(m["files"], result.files, strict=True):
        assert entry["name"] == path.name
        assert entry["sha256"] == sha(path.read_text())


def test_export_file_contents_match_builders(tmp_path: Path) -> None:
    frame = members(2_000)
    for platform in PLATFORMS:
        files, customers = platform_files(platform, frame)
        assert customers == 2_000
        result = export_segment_file(frame, platform, tmp_path, "seg", 0, created_at=WHEN)
        assert [p.read_text() for p in result.files] == [f.content for f in files]
    assert json.loads((tmp_path / "seg__meta.json").read_text()) == meta_payload(frame)
    google = json.loads((tmp_path / "seg__google.json").read_text())
    assert google == {"encoding": "HEX", "audienceMembers": google_members(frame)}
    assert (tmp_path / "seg__yandex.csv").read_text() == yandex_csv(frame)
    vk = vk_files(frame)
    assert (tmp_path / "seg__vk_phones.txt").read_text() == vk["phones"]
    assert (tmp_path / "seg__vk_emails.txt").read_text() == vk["emails"]
    assert len(vk["phones"].splitlines()) == 2_000


def test_meta_value_based_seed_export(tmp_path: Path) -> None:
    frame = members(120)
    frame["ltv"] = [float(i % 7) * 10.5 for i in range(len(frame))]
    result = export_segment_file(frame, "meta", tmp_path, "top_ltv_seed", 3, value_column="ltv",
                                 created_at=WHEN)
    payload = json.loads(result.files[0].read_text())
    assert payload["schema"] == ["EMAIL", "PHONE", "LOOKALIKE_VALUE"]
    assert len(payload["data"]) == 120
    with pytest.raises(ValueError, match="Meta"):
        export_segment_file(frame, "google", tmp_path, "x", 0, value_column="ltv")


@pytest.mark.parametrize(("platform", "minimum", "count"), [
    ("meta", 100, 99), ("google", 100, 42), ("yandex", 100, 99), ("vk", 2000, 1999)])
def test_minimum_sizes(tmp_path: Path, platform: str, minimum: int, count: int) -> None:
    frame = members(count)
    with pytest.raises(AudienceTooSmall) as info:
        export_segment_file(frame, platform, tmp_path / "strict", "small", 0, created_at=WHEN)
    err = info.value
    assert (err.platform, err.minimum, err.count) == (platform, minimum, count)
    assert platform in str(err) and str(minimum) in str(err) and str(count) in str(err)
    assert not (tmp_path / "strict").exists()           # nothing written
    result = export_segment_file(frame, platform, tmp_path / "demo", "small", 0,
                                 created_at=WHEN, allow_small=True)
    assert result.below_minimum and result.manifest["below_minimum"] is True
    assert result.manifest["minimum_rows"] == minimum
    assert result.files and all(p.exists() for p in result.files)


def test_vk_minimum_applies_per_list(tmp_path: Path) -> None:
    # 2,000 phones but only 1,500 e-mails: the e-mail list alone is too small
    frame = pd.concat([members(2_000, emails=False), members(1_500, phones=False)])
    with pytest.raises(AudienceTooSmall, match="emails") as info:
        export_segment_file(frame, "vk", tmp_path, "mixed", 0, created_at=WHEN)
    assert info.value.count == 1_500
    result = export_segment_file(members(2_000, emails=False), "vk", tmp_path, "phones_only", 0,
                                 created_at=WHEN)
    assert [p.name for p in result.files] == ["phones_only__vk_phones.txt"]


def test_customers_without_identifier_are_counted_not_exported(tmp_path: Path) -> None:
    frame = pd.concat([members(100), pd.DataFrame(
        [("c_junk", "email", "nope"), ("c_junk", "phone", "123")],
        columns=["customer_id", "kind", "value"])])
    result = export_segment_file(frame, "yandex", tmp_path, "seg", 2, created_at=WHEN)
    counts = result.manifest["counts"]
    assert (counts["members"], counts["customers"], counts["without_identifier"]) == (101, 100, 1)
    assert counts["rows"] == 100
    empty = pd.DataFrame(columns=["customer_id", "kind", "value"])
    with pytest.raises(AudienceTooSmall, match="has 0"):
        export_segment_file(empty, "google", tmp_path, "none", 0)


def test_export_rejects_unsafe_names_and_platforms(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="safe file name"):
        export_segment_file(members(200), "meta", tmp_path, "../escape", 0)
    with pytest.raises(ValueError, match="unknown platform"):
        export_segment_file(members(200), "tiktok", tmp_path, "seg", 0)
    with pytest.raises(ValueError, match="lacks columns"):
        export_segment_file(pd.DataFrame({"customer_id": ["a"]}), "meta", tmp_path, "seg", 0)


# -- identifiers from the warehouse ----------------------------------------------------------

def test_customer_identifiers_binds_ids(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    with wh.connect() as conn:
        cur = conn.cursor()
        cur.execute("create schema intermediate")
        cur.execute("create table intermediate.int_customer_identifiers "
                    "(customer_id varchar, kind varchar, value_normalized varchar)")
        cur.executemany("insert into intermediate.int_customer_identifiers values (?, ?, ?)", [
            ("c_b", "phone", "+79161234567"), ("c_a", "email", "a@example.ru"),
            ("c_a", "phone", "+79990000000"), ("c_x", "email", "x@example.ru"),
            ("c_b", "email", "b@example.ru")])
    found = customer_identifiers(wh, ["c_b", "c_a", "c_a", "c_none", "' or 1=1 --"])
    assert list(found.columns) == ["customer_id", "kind", "value"]
    assert found.to_dict("records") == [
        {"customer_id": "c_a", "kind": "email", "value": "a@example.ru"},
        {"customer_id": "c_a", "kind": "phone", "value": "+79990000000"},
        {"customer_id": "c_b", "kind": "email", "value": "b@example.ru"},
        {"customer_id": "c_b", "kind": "phone", "value": "+79161234567"},
    ]
    assert customer_identifiers(wh, []).empty
    assert list(customer_identifiers(wh, []).columns) == ["customer_id", "kind", "value"]


def test_int_customer_identifiers_on_the_marts(marts: MartsBuild, tmp_path: Path) -> None:
    nodes = marts.assert_nodes_passed("int_customer_identifiers")
    assert any(n.startswith("unit_test.") for n in nodes)  # the dbt unit test ran and passed
    # the grain test and the column rules (not_null, accepted_values) ran and passed
    assert any(n.startswith("test.voronka.unique_combination_int_customer_identifiers")
               for n in nodes)
    assert any(n.startswith("test.voronka.column_values_int_customer_identifiers.")
               for n in nodes)
    table = marts.df("select customer_id, kind, value_normalized "
                     "from intermediate.int_customer_identifiers")
    assert not table.empty and set(table["kind"]) == {"phone", "email"}
    phones = table.loc[table["kind"] == "phone", "value_normalized"]
    assert phones.str.fullmatch(r"\+[1-9]\d{6,14}").all()
    emails = table.loc[table["kind"] == "email", "value_normalized"]
    assert (emails == emails.str.strip().str.lower()).all() and emails.str.contains("@").all()
    resolved = marts.df("select distinct customer_id from intermediate.int_customers__resolved")
    assert set(table["customer_id"]) <= set(resolved["customer_id"])
    ids = sorted(table["customer_id"].unique())[:150]
    frame = customer_identifiers(marts.wh, ids)
    expected = table[table["customer_id"].isin(ids)]
    assert len(frame) == len(expected) and set(frame["customer_id"]) == set(ids)
    result = export_segment_file(frame, "yandex", tmp_path, "marts_sample", 0, created_at=WHEN)
    text = result.files[0].read_text()
    for kind, value in zip(expected["kind"], expected["value_normalized"], strict=True):
        assert value not in text and (kind == "email" or value.lstrip("+") not in text)
