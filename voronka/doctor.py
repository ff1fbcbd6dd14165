"""`voronka doctor`: are the configured sources, the warehouse and the audience destinations
ready for a run? One cheap call per source, one sentence per problem, exit code 0 or 1.

Which sources are checked follows the graph's own rule (``orchestration.resources.SOURCES``:
a source is configured when one of its identifying variables is set), and each source is built
by the same resource a run uses, so the doctor sees what a run would see. Each source's
``check_connection()`` makes its call (amoCRM ``/api/v4/account``, Bitrix24 ``user.current``,
Direct ``Clients.get``, VK one ad plan, Google a one-row query, Meta the ad account node; the
files source reads headers only). Tokens that rotate are refreshed and saved to the same token
store a run uses, exactly as the run's first call would.

Every line printed passes through a redactor holding the value of every secret-looking
variable (tokens, secrets, passwords, the Bitrix24 webhook code), on top of the extractors'
own redaction.

voronka/cli.py wires it in with::

    from voronka import doctor
    doctor.add_parser(sub)        # sub = parser.add_subparsers(...)
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from extractors.http import ApiError, AuthorizationError, HttpClient, Redactor
from voronka import settings

LABELS = {
    "amocrm": "amoCRM", "yandex_direct": "Yandex Direct", "vk_ads": "VK Ads",
    "google_ads": "Google Ads", "meta_ads": "Meta Ads", "files": "Files",
    "bitrix24": "Bitrix24",
}
BASE_URL_VARS = {
    "amocrm": "AMOCRM_BASE_URL", "yandex_direct": "YANDEX_DIRECT_BASE_URL",
    "vk_ads": "VK_ADS_BASE_URL", "google_ads": "GOOGLE_ADS_BASE_URL",
    "meta_ads": "META_ADS_BASE_URL", "bitrix24": "BITRIX24_WEBHOOK_URL or BITRIX24_PORTAL_URL",
}
DATE_VARS = {
    "yandex_direct": ("YANDEX_DIRECT_START_DATE", "YANDEX_DIRECT_UNTIL_DATE"),
    "vk_ads": ("VK_ADS_START_DATE", "VK_ADS_UNTIL_DATE", "VK_ADS_TODAY"),
    "google_ads": ("GOOGLE_ADS_START_DATE", "GOOGLE_ADS_UNTIL_DATE"),
    "meta_ads": ("META_ADS_START_DATE", "META_ADS_UNTIL_DATE"),
}
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|WEBHOOK_URL|DSN")


@dataclass(frozen=True)
class Finding:
    """One line of the report: what was checked, whether it is fine, and one sentence."""

    subject: str
    ok: bool
    text: str


def _env(name: str) -> str:
    return (os.environ.get(name) or "").strip()


def _unset(*names: str) -> list[str]:
    return [n for n in names if not _env(n)]


def _not_set(missing: list[str], why: str = "") -> str:
    verb = "is" if len(missing) == 1 else "are"
    return f"{', '.join(missing)} {verb} not set" + (f" ({why})" if why else "")


# --------------------------------------------------------------------------------------------
# settings: what a source needs before any call (named, never shown)
# --------------------------------------------------------------------------------------------


def _amocrm_store() -> Path | None:
    from orchestration.resources import amocrm_account

    try:
        _, subdomain = amocrm_account()
    except ValueError:
        return None
    return settings.state_dir() / f"amocrm_{subdomain}_token.json"


def _amocrm_settings() -> list[str]:
    if _env("AMOCRM_LONG_LIVED_TOKEN"):
        return []
    oauth = ["AMOCRM_CLIENT_ID", "AMOCRM_CLIENT_SECRET", "AMOCRM_REDIRECT_URI"]
    store = _amocrm_store()
    if store is None or not store.exists():
        oauth.append("AMOCRM_REFRESH_TOKEN")
    missing = _unset(*oauth)
    if not missing:
        return []
    return [_not_set(missing, "OAuth needs " + ", ".join(oauth) + "; a private integration "
                     "can set AMOCRM_LONG_LIVED_TOKEN instead")]


def _bitrix24_settings() -> list[str]:
    if _env("BITRIX24_WEBHOOK_URL"):
        return []
    oauth = ["BITRIX24_PORTAL_URL", "BITRIX24_CLIENT_ID", "BITRIX24_CLIENT_SECRET",
             "BITRIX24_REFRESH_TOKEN"]
    missing = _unset(*oauth)
    store = _bitrix24_store()
    if not missing or (missing == ["BITRIX24_REFRESH_TOKEN"] and store and store.exists()):
        return []
    return [_not_set(missing, "an OAuth app needs " + ", ".join(oauth) + "; or set "
                     "BITRIX24_WEBHOOK_URL to an incoming webhook")]


def _bitrix24_store() -> Path | None:
    """Where the OAuth app's rotated tokens live (as ``Bitrix24Resource`` names it)."""
    account = _env("BITRIX24_ACCOUNT") or urlsplit(_env("BITRIX24_PORTAL_URL")).hostname or ""
    return settings.state_dir() / f"bitrix24_{account}_token.json" if account else None


REQUIRED: dict[str, tuple[str, ...]] = {
    "yandex_direct": ("YANDEX_DIRECT_TOKEN", "YANDEX_DIRECT_CLIENT_LOGIN",
                      "YANDEX_DIRECT_START_DATE"),
    "vk_ads": ("VK_ADS_ACCOUNT", "VK_ADS_CLIENT_ID", "VK_ADS_CLIENT_SECRET", "VK_ADS_START_DATE"),
    "google_ads": ("GOOGLE_ADS_CUSTOMER_ID", "GOOGLE_ADS_CLIENT_ID", "GOOGLE_ADS_CLIENT_SECRET",
                   "GOOGLE_ADS_REFRESH_TOKEN", "GOOGLE_ADS_START_DATE"),
    "meta_ads": ("META_ADS_ACCOUNT_ID", "META_ADS_ACCESS_TOKEN", "META_ADS_START_DATE"),
}


def settings_problems(source: str) -> list[str]:
    """Missing or malformed settings of one source, each a sentence naming the variables."""
    if source == "amocrm":
        return _amocrm_settings()
    if source == "bitrix24":
        return _bitrix24_settings()
    missing = _unset(*REQUIRED.get(source, ()))
    problems = [_not_set(missing)] if missing else []
    for name in DATE_VARS.get(source, ()):
        value = _env(name)
        if value and not _is_iso_date(value):
            problems.append(f"{name} must be an ISO date (YYYY-MM-DD), got {value!r}")
    return problems


def _is_iso_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# errors: one sentence saying what is wrong and what to do
# --------------------------------------------------------------------------------------------


def _status(exc: ApiError) -> str:
    parts = [f"HTTP {exc.status}" if exc.status is not None else "", exc.error_code or ""]
    return " ".join(p for p in parts if p) or "no HTTP response"


def _store_hint(store: Path | None, variable: str) -> str:
    """A stored token wins over the variable: say so when there is one."""
    if store is not None and store.exists():
        return f", set {variable} and delete the stored token {store} (it is used first)"
    return f" and set {variable}"


def _amocrm_error(exc: ApiError) -> str | None:
    text = f"{exc.detail} {exc.body_excerpt}".lower()
    if isinstance(exc, AuthorizationError) and _env("AMOCRM_LONG_LIVED_TOKEN"):
        return (f"the long-lived token was rejected ({_status(exc)}) - generate a new one in "
                "the integration's 'Keys and scopes' tab and set AMOCRM_LONG_LIVED_TOKEN")
    if isinstance(exc, AuthorizationError) and "client authentication failed" in text:
        return (f"the integration's credentials were rejected ({_status(exc)}) - check "
                "AMOCRM_CLIENT_ID, AMOCRM_CLIENT_SECRET and AMOCRM_REDIRECT_URI against the "
                "integration's settings")
    if isinstance(exc, AuthorizationError) and "refresh token" in text:
        return (f"the refresh token was rejected ({_status(exc)}) - it was already used, "
                "revoked or is older than 3 months; issue a new one in the integration "
                "settings" + _store_hint(_amocrm_store(), "AMOCRM_REFRESH_TOKEN"))
    if exc.status == 402:
        return "the account's subscription has run out (HTTP 402 Payment Required)"
    if exc.status == 403:
        return (f"access was refused ({_status(exc)}) - the account or this IP is blocked "
                "(after repeated 429s) or the integration's user lacks rights")
    return None


def _bitrix24_error(exc: ApiError) -> str | None:
    code = exc.error_code or ""
    if exc.status == 401 and _env("BITRIX24_WEBHOOK_URL"):
        return (f"the incoming webhook was rejected ({_status(exc)}) - it was deleted, expired "
                "or regenerated; create a new one (scopes crm and user) and set "
                "BITRIX24_WEBHOOK_URL")
    if code == "invalid_client":
        return (f"the app's credentials were rejected ({_status(exc)}) - check "
                "BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET")
    if isinstance(exc, AuthorizationError) and "refresh token" in exc.detail:
        return (f"the refresh token was rejected ({_status(exc)}) - it was already used, "
                "revoked or is older than 180 days; re-authorise the app"
                + _store_hint(_bitrix24_store(), "BITRIX24_REFRESH_TOKEN"))
    if code == "insufficient_scope":
        return ("the webhook or app lacks a scope the extract needs (insufficient_scope) - "
                "give it the crm and user scopes")
    if code == "ACCESS_DENIED":
        return "the portal refused REST access (ACCESS_DENIED: REST needs a commercial plan)"
    if code == "ERROR_METHOD_NOT_FOUND" or exc.status == 404:
        return (f"the portal answered {_status(exc)} - check that BITRIX24_WEBHOOK_URL (or "
                "BITRIX24_PORTAL_URL) points at the portal's /rest/ address")
    return None


def _direct_error(exc: ApiError) -> str | None:
    login = _env("YANDEX_DIRECT_CLIENT_LOGIN")
    if exc.error_code == "53":
        return (f"the OAuth token was rejected (error 53, HTTP {exc.status}) - issue a new token "
                f"for the login {login} and set YANDEX_DIRECT_TOKEN")
    if exc.error_code == "58":
        return ("the application's API access request is not approved yet (error 58) - wait "
                "for approval in the Direct API settings")
    if exc.error_code == "54":
        return (f"the token's user has no rights to the client login {login} (error 54) - "
                "check YANDEX_DIRECT_CLIENT_LOGIN")
    return None


def _vk_error(exc: ApiError) -> str | None:
    if exc.error_code == "ERR_LIMIT_EXCEEDED" and isinstance(exc, AuthorizationError):
        return ("the cabinet already has 5 live tokens (ERR_LIMIT_EXCEEDED) - delete old ones "
                "(POST /api/v2/oauth2/token/delete.json) so voronka can obtain its own")
    if isinstance(exc, AuthorizationError):
        return (f"the client credentials were rejected ({_status(exc)}) - check "
                "VK_ADS_CLIENT_ID and VK_ADS_CLIENT_SECRET")
    return None


def _google_error(exc: ApiError) -> str | None:
    if isinstance(exc, AuthorizationError) and "refresh" in exc.detail:
        return (f"the OAuth refresh was refused ({_status(exc)}) - the refresh token is "
                "revoked or expired, or the client id/secret are wrong; re-run the consent flow "
                "and set GOOGLE_ADS_REFRESH_TOKEN (check GOOGLE_ADS_CLIENT_ID/_CLIENT_SECRET)")
    if exc.error_code in ("USER_PERMISSION_DENIED", "CUSTOMER_NOT_FOUND", "PERMISSION_DENIED"):
        return (f"no access to customer {_env('GOOGLE_ADS_CUSTOMER_ID')} ({exc.error_code}) - "
                "check GOOGLE_ADS_CUSTOMER_ID and GOOGLE_ADS_LOGIN_CUSTOMER_ID (the manager "
                "account, if access goes through one)")
    return None


def _meta_error(exc: ApiError) -> str | None:
    if isinstance(exc, AuthorizationError):
        return (f"the access token was rejected (Graph code {exc.error_code or exc.status}) - "
                "renew it (a system-user "
                "token with ads_read) and set META_ADS_ACCESS_TOKEN")
    if exc.status is not None and exc.status < 500 and "does not exist" in exc.detail:
        return (f"the token cannot see the ad account {_env('META_ADS_ACCOUNT_ID')} - check "
                "META_ADS_ACCOUNT_ID and the token's access to it")
    return None


EXPLAIN: dict[str, Callable[[ApiError], str | None]] = {
    "amocrm": _amocrm_error, "bitrix24": _bitrix24_error, "yandex_direct": _direct_error,
    "vk_ads": _vk_error, "google_ads": _google_error, "meta_ads": _meta_error,
}


def _network_reason(detail: str) -> str:
    """The socket's own words ("Connection refused", "Name or service not known") out of
    urllib3's nested exception text."""
    found = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", detail)
    if found:
        return found[-1].strip()
    return "timed out" if "timed out" in detail.lower() else detail[:160]


def explain(source: str, exc: BaseException) -> str:
    """One sentence for a failed check call: the source's own reading first, then generic."""
    if isinstance(exc, ApiError):
        specific = EXPLAIN.get(source, lambda _: None)(exc)
        if specific:
            return specific
        if exc.status is None:
            host = urlsplit(exc.url).netloc or exc.url
            return (f"cannot reach {host} ({_network_reason(exc.detail)}) - check "
                    f"{BASE_URL_VARS.get(source, 'the address')} and the network")
        return f"the check call failed ({_status(exc)}): {exc.detail or exc.url}"
    return f"{exc}" if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------


def _quick(source: Any) -> None:
    """A doctor answers in seconds: one retry, short waits, instead of a run's patient
    backoff (minutes against a dead host)."""
    for value in vars(source).values():
        if isinstance(value, HttpClient):
            value.max_retries = 1
            value.timeout = (5.0, 20.0)
            value.backoff_max = 1.0
            value.max_retry_after = 5.0


def check_source(source: str) -> list[Finding]:
    """Settings first (named when missing), then the source's one cheap call."""
    from orchestration.resources import SOURCES

    label = LABELS.get(source, source)
    problems = settings_problems(source)
    if problems:
        return [Finding(label, False, p) for p in problems]
    try:
        extractor = SOURCES[source][1]().source()
    except ValueError as exc:
        return [Finding(label, False, str(exc))]
    if source == "files":
        found = extractor.contract_problems()
        if found:
            return [Finding(label, False, p) for p in found]
    _quick(extractor)
    try:
        return [Finding(label, True, extractor.check_connection())]
    except Exception as exc:  # every failure becomes a sentence, never a traceback
        return [Finding(label, False, explain(source, exc))]
    finally:
        close = getattr(extractor, "close", None)
        if close is not None:
            close()


def check_sources() -> list[Finding]:
    from orchestration.resources import SOURCES, enabled_sources

    enabled = enabled_sources()
    if not enabled:
        example = ", ".join(f"{LABELS[s]}: {' or '.join(SOURCES[s][0])}" for s in SOURCES)
        return [Finding("sources", False, f"no source is configured - set the settings of at "
                                          f"least one ({example}); see .env.example")]
    findings = []
    for source in enabled:
        findings += check_source(source)
    if "amocrm" in enabled:
        findings += _amocrm_skip_setting()
    return findings


def _amocrm_skip_setting() -> list[Finding]:
    from orchestration.resources import amocrm_skipped_entities

    try:
        amocrm_skipped_entities()
    except ValueError as exc:
        return [Finding("amoCRM", False, str(exc))]
    return []


def check_warehouse() -> Finding:
    try:
        conf = settings.WarehouseSettings.from_env()
    except ValueError as exc:
        return Finding("warehouse", False, str(exc))
    if conf.kind == "duckdb":
        return _check_duckdb(conf.duckdb_path, conf.published_path)
    if conf.kind == "postgres":
        return _check_postgres(conf)
    return Finding("warehouse", False,
                   f"VORONKA_WAREHOUSE must be 'duckdb' or 'postgres', not {conf.kind!r}")


def _writable_dir(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path``'s folder if voronka cannot create the file
    there, else None."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return None if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK) else folder


def _check_duckdb(working: Path, published: Path) -> Finding:
    import duckdb

    for path, variable in ((working, "VORONKA_DUCKDB_PATH"),
                           (published, "VORONKA_PUBLISHED_PATH")):
        blocked = _writable_dir(path)
        if blocked is not None:
            return Finding("warehouse", False, f"cannot write {path} ({blocked} is not a "
                                               f"writable folder) - fix it or set {variable}")
    if working.exists():
        try:
            duckdb.connect(str(working), read_only=True).close()
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                return Finding("warehouse", False, f"{working} cannot be opened as DuckDB "
                                                   f"({exc}) - set VORONKA_DUCKDB_PATH")
        except duckdb.Error as exc:
            return Finding("warehouse", False, f"{working} cannot be opened as DuckDB ({exc}) "
                                               "- set VORONKA_DUCKDB_PATH")
    state = "exists" if working.exists() else "will be created"
    return Finding("warehouse", True, f"DuckDB {working} ({state}); BI reads {published}")


def _check_postgres(conf: settings.WarehouseSettings) -> Finding:
    import psycopg2

    where = f"{conf.pg_host}:{conf.pg_port}"
    try:
        conn = psycopg2.connect(conf.postgres_dsn, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        return Finding("warehouse", False, _postgres_problem(str(exc), conf, where))
    try:
        cur = conn.cursor()
        cur.execute("select has_database_privilege(current_database(), 'CREATE')")
        can_create = bool(cur.fetchone()[0])
    finally:
        conn.close()
    if not can_create:
        return Finding("warehouse", False, f"user {conf.pg_user} cannot create schemas in "
                                           f"database {conf.pg_db} - grant it CREATE there")
    return Finding("warehouse", True, f"PostgreSQL {where}/{conf.pg_db} as {conf.pg_user}")


def _postgres_problem(message: str, conf: settings.WarehouseSettings, where: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "no detail"
    first = first.split("failed: ", 1)[-1].removeprefix("FATAL:").strip()
    if f'database "{conf.pg_db}" does not exist' in message:
        return (f"database {conf.pg_db} does not exist on {where} - create it (createdb "
                f"{conf.pg_db}) or set VORONKA_POSTGRES_DB")
    if any(w in message for w in ("password", "authentication", "role", "pg_hba.conf")):
        return (f"PostgreSQL at {where} refused user {conf.pg_user} ({first}) - set "
                "VORONKA_POSTGRES_USER and VORONKA_POSTGRES_PASSWORD")
    return (f"PostgreSQL at {where} is unreachable ({first}) - start it or set "
            "VORONKA_POSTGRES_HOST and VORONKA_POSTGRES_PORT")


def check_audiences() -> list[Finding]:
    """Audience destinations (VORONKA_AUDIENCE_PLATFORMS): their settings, without a call
    (an upload API has no read-only call that proves the token without side effects on
    every platform)."""
    from audiences.clients import client_from_env
    from audiences.sync import PLATFORMS_VAR, configured_platforms

    try:
        platforms = configured_platforms(os.environ)
    except (ValueError, KeyError) as exc:
        return [Finding("audiences", False, f"{PLATFORMS_VAR}: {exc}")]
    findings = []
    for name in platforms:
        try:
            client_from_env(name).close()
        except ValueError as exc:
            findings.append(Finding(f"audiences {name}", False, str(exc)))
        else:
            findings.append(Finding(f"audiences {name}", True, "settings present (the "
                                                               "token is first used by a sync)"))
    return findings


def check_general() -> list[Finding]:
    """Settings every run reads, whatever the sources: the as-of date, the account currency
    and its rates file, the channel mapping file, the alert destinations."""
    from extractors.files import Rates, account_currency
    from orchestration.alerts import destinations
    from warehouse.channel_mapping import read_mapping

    checks: list[tuple[str, Callable[[], Any]]] = [
        ("settings", settings.as_of_date), ("currency", account_currency),
        ("currency", Rates.from_env), ("channels", read_mapping), ("alerts", destinations),
    ]
    findings = []
    for subject, check in checks:
        try:
            check()
        except ValueError as exc:  # every one of them says which setting, file and line
            findings.append(Finding(subject, False, str(exc)))
    return findings


def diagnose() -> list[Finding]:
    """Every check, in report order: sources, warehouse, audience destinations."""
    return [*check_general(), *check_sources(), check_warehouse(), *check_audiences()]


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def secrets_redactor() -> Redactor:
    """Masks the value of every secret-looking variable (and the webhook code in the URL)."""
    redactor = Redactor()
    for name, value in os.environ.items():
        if SECRET_NAME.search(name) and value.strip():
            redactor.add(value.strip())
    path = [part for part in urlsplit(_env("BITRIX24_WEBHOOK_URL")).path.split("/") if part]
    if path:
        redactor.add(path[-1])  # the webhook code is a password
    return redactor


def report_lines(findings: list[Finding], redact: Callable[[str], str]) -> Iterator[str]:
    width = max((len(f.subject) for f in findings), default=0)
    for f in findings:
        yield redact(f"  {'ok  ' if f.ok else 'FAIL'}  {f.subject.ljust(width)}  {f.text}")
    problems = sum(1 for f in findings if not f.ok)
    yield ("all good: a run can start." if not problems else
           f"{problems} problem{'s' if problems > 1 else ''}: fix "
           f"{'them' if problems > 1 else 'it'} and run `voronka doctor` again.")


@contextmanager
def _quiet_extractor_logs() -> Iterator[None]:
    """The extractors log retries as warnings; the report already says what went wrong."""
    logger = logging.getLogger("voronka.extractors")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run(args: argparse.Namespace) -> int:
    """`voronka doctor`: 0 when every check passed, 1 otherwise."""
    from voronka.run import RunSetupError, load_env_file

    try:
        env_path = load_env_file(getattr(args, "env_file", None))
    except RunSetupError as exc:
        print(f"voronka doctor: {exc}", file=sys.stderr)
        return 1
    redact = secrets_redactor()
    if env_path:
        print(f"voronka doctor: settings from the environment and {env_path}")
    with _quiet_extractor_logs():
        findings = diagnose()
    for line in report_lines(findings, redact):
        print(line)
    return 0 if all(f.ok for f in findings) else 1


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `doctor` to voronka's subcommands."""
    doctor = subparsers.add_parser(
        "doctor", help="check each configured source's settings and credentials, the "
                       "warehouse and the audience destinations (one cheap call each)",
        description="Checks every configured source with one cheap authenticated call, the "
                    "warehouse (DuckDB path writable / PostgreSQL reachable) and the audience "
                    "destinations' settings; says what is wrong in one sentence per problem. "
                    "Exit code 0 when all is well, 1 otherwise.")
    doctor.add_argument("--env-file", type=Path, metavar="PATH",
                        help="settings file (default: ./.env if present); variables already "
                             "set in the environment win")
    doctor.set_defaults(func=run)
    return doctor
