"""Dagster resources, configured from environment variables (see .env.example).

Secrets (client secrets, refresh and long-lived tokens, the Direct token, the Bitrix24 webhook
URL) are not config fields at all: they are read from the environment at the moment a source
is built, so they can never show up in the Dagster UI, run config or metadata.

The ad platforms' ``source(start_date, until_date)`` takes the partition range of a run; the
configured ``*_START_DATE``/``*_UNTIL_DATE`` still bound it (see ``orchestration.partitions``).
"""

from __future__ import annotations

import os
from datetime import date
from urllib.parse import urlsplit

import dagster as dg

from extractors.amocrm import AmoCRMSource, account_address
from extractors.bitrix24 import OAUTH_URL as BITRIX24_OAUTH_URL
from extractors.bitrix24 import Bitrix24Source
from extractors.files import FilesSource
from extractors.google_ads import GoogleAdsSource
from extractors.meta_ads import MetaAdsSource
from extractors.state import TokenStore
from extractors.vk_ads import MAX_DAYS_BACK as VK_MAX_DAYS
from extractors.vk_ads import VKAdsSource
from extractors.yandex_direct import YandexDirectSource
from voronka import settings
from warehouse import Warehouse


def _secret(name: str) -> str | None:
    return os.environ.get(name) or None


class WarehouseResource(dg.ConfigurableResource):
    """The configured warehouse (DuckDB file by default, or PostgreSQL)."""

    def open(self) -> Warehouse:
        return settings.WarehouseSettings.from_env().open()

    def export_for_dbt(self) -> None:
        settings.WarehouseSettings.from_env().export_for_dbt()


class AmoCRMResource(dg.ConfigurableResource):
    """One amoCRM account: OAuth2 with a rotating refresh token, or a long-lived token.

    Env: AMOCRM_BASE_URL or AMOCRM_SUBDOMAIN (either names the account; the other is derived),
    AMOCRM_CLIENT_ID, AMOCRM_REDIRECT_URI, optional AMOCRM_SKIP_ENTITIES. Secrets:
    AMOCRM_CLIENT_SECRET, AMOCRM_REFRESH_TOKEN (seeds an empty token store only),
    AMOCRM_LONG_LIVED_TOKEN. Fields left empty are read from the environment when a run starts.
    """

    base_url: str = ""
    subdomain: str = ""
    client_id: str = ""
    redirect_uri: str = ""
    # amoCRM allows 7 req/s per integration; staying at 6.5 leaves headroom for request jitter
    # and for other integrations on the same account (crm_apis.md §1.11).
    rate_limit_per_s: float = 6.5

    def source(self) -> AmoCRMSource:
        base_url, subdomain = amocrm_account(self.base_url, self.subdomain)
        client_id = self.client_id or os.environ.get("AMOCRM_CLIENT_ID") or None
        if not _secret("AMOCRM_LONG_LIVED_TOKEN"):
            missing = [n for n, v in (("AMOCRM_CLIENT_ID", client_id),
                                      ("AMOCRM_CLIENT_SECRET", _secret("AMOCRM_CLIENT_SECRET")))
                       if not v]
            if missing:
                raise ValueError(f"amoCRM OAuth needs {' and '.join(missing)} "
                                 "(or set AMOCRM_LONG_LIVED_TOKEN)")
        return AmoCRMSource(
            base_url,
            account=subdomain,
            client_id=client_id,
            client_secret=_secret("AMOCRM_CLIENT_SECRET"),
            redirect_uri=self.redirect_uri or os.environ.get("AMOCRM_REDIRECT_URI") or None,
            token_store=TokenStore(settings.state_dir() / f"amocrm_{subdomain}_token.json"),
            initial_refresh_token=_secret("AMOCRM_REFRESH_TOKEN"),
            long_lived_token=_secret("AMOCRM_LONG_LIVED_TOKEN"),
            rate_limit_per_s=self.rate_limit_per_s,
        )


def amocrm_account(base_url: str = "", subdomain: str = "") -> tuple[str, str]:
    """(base URL, subdomain) from the arguments or AMOCRM_BASE_URL / AMOCRM_SUBDOMAIN: either
    one is enough (``acme`` -> https://acme.amocrm.ru; https://acme.kommo.com -> ``acme``)."""
    return account_address(base_url or os.environ.get("AMOCRM_BASE_URL", ""),
                           subdomain or os.environ.get("AMOCRM_SUBDOMAIN", ""))


# Entities an account may not have (companies, the buyer funnel, the bin): AMOCRM_SKIP_ENTITIES
# leaves them out of the graph; "buyers" names the buyer-funnel entities at once.
AMOCRM_OPTIONAL_ENTITIES = ("companies", "customers", "customer_statuses", "transactions",
                            "deleted_leads", "customer_events")
AMOCRM_ENTITY_ALIASES = {"buyers": ("customers", "customer_statuses", "transactions",
                                    "customer_events"),
                         "bin": ("deleted_leads",)}


def amocrm_skipped_entities() -> tuple[str, ...]:
    """The optional amoCRM entities switched off by AMOCRM_SKIP_ENTITIES (comma-separated)."""
    raw = os.environ.get("AMOCRM_SKIP_ENTITIES", "")
    skipped: list[str] = []
    for name in (n.strip().lower() for n in raw.split(",")):
        if not name:
            continue
        names = AMOCRM_ENTITY_ALIASES.get(name, (name,))
        if any(n not in AMOCRM_OPTIONAL_ENTITIES for n in names):
            allowed = ", ".join([*AMOCRM_OPTIONAL_ENTITIES, *AMOCRM_ENTITY_ALIASES])
            raise ValueError(f"AMOCRM_SKIP_ENTITIES: {name!r} cannot be switched off; "
                             f"optional entities are {allowed}")
        skipped += [n for n in names if n not in skipped]
    return tuple(skipped)


def _bounded(
    configured_start: date, configured_until: date | None,
    start: date | None, until: date | None,
) -> tuple[date, date | None]:
    """A requested range (a run's partitions) cut to the configured start and until dates;
    no request: the configured range (until None = yesterday, the extractor's default)."""
    first = max(configured_start, start) if start else configured_start
    if until and configured_until:
        return first, min(until, configured_until)
    return first, until or configured_until


class YandexDirectResource(dg.ConfigurableResource):
    """One Yandex Direct advertiser (Reports API v5). Secret: YANDEX_DIRECT_TOKEN.

    Env: YANDEX_DIRECT_CLIENT_LOGIN, YANDEX_DIRECT_START_DATE (fields left empty are read
    when a run starts); optional YANDEX_DIRECT_BASE_URL (the API or an emulator),
    YANDEX_DIRECT_UNTIL_DATE (default: yesterday in Moscow).
    """

    client_login: str = ""
    start_date: str = ""
    chunk_days: int = 366

    def source(self, start_date: date | None = None,
               until_date: date | None = None) -> YandexDirectSource:
        token = _required("YANDEX_DIRECT_TOKEN")
        configured = self.start_date or _required("YANDEX_DIRECT_START_DATE")
        first, last = _bounded(date.fromisoformat(configured),
                               _env_date("YANDEX_DIRECT_UNTIL_DATE"), start_date, until_date)
        return YandexDirectSource(
            os.environ.get("YANDEX_DIRECT_BASE_URL") or "https://api.direct.yandex.com",
            token=token,
            client_login=self.client_login or _required("YANDEX_DIRECT_CLIENT_LOGIN"),
            start_date=first,
            until_date=last,
            chunk_days=self.chunk_days,
        )


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """The warehouse and every source configured in the environment (see ``SOURCES``)."""
    return {"warehouse": WarehouseResource(), **source_resources()}


def _env_date(name: str) -> date | None:
    value = os.environ.get(name)
    return date.fromisoformat(value) if value else None


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"{name} is not set")
    return value


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


class VKAdsResource(dg.ConfigurableResource):
    """One VK Ads cabinet. Env: VK_ADS_ACCOUNT, VK_ADS_CLIENT_ID, VK_ADS_CLIENT_SECRET (secret),
    VK_ADS_START_DATE, optional VK_ADS_BASE_URL, VK_ADS_UNTIL_DATE, VK_ADS_TODAY,
    VK_ADS_CHUNK_DAYS (default 366, the most one statistics request may span)."""

    def source(self, start_date: date | None = None,
               until_date: date | None = None) -> VKAdsSource:
        account = _required("VK_ADS_ACCOUNT")
        first, last = _bounded(date.fromisoformat(_required("VK_ADS_START_DATE")),
                               _env_date("VK_ADS_UNTIL_DATE"), start_date, until_date)
        return VKAdsSource(
            os.environ.get("VK_ADS_BASE_URL") or "https://ads.vk.com",
            account=account,
            client_id=_required("VK_ADS_CLIENT_ID"),
            client_secret=_required("VK_ADS_CLIENT_SECRET"),
            token_store=TokenStore(settings.state_dir() / f"vk_ads_{account}_token.json"),
            start_date=first,
            until_date=last,
            chunk_days=_env_int("VK_ADS_CHUNK_DAYS", VK_MAX_DAYS),
            today=_env_date("VK_ADS_TODAY"),
        )


class GoogleAdsResource(dg.ConfigurableResource):
    """One Google Ads customer. Env: GOOGLE_ADS_CUSTOMER_ID, GOOGLE_ADS_CLIENT_ID,
    GOOGLE_ADS_CLIENT_SECRET, GOOGLE_ADS_REFRESH_TOKEN (secrets), GOOGLE_ADS_START_DATE,
    optional GOOGLE_ADS_LOGIN_CUSTOMER_ID, GOOGLE_ADS_DEVELOPER_TOKEN, GOOGLE_ADS_BASE_URL,
    GOOGLE_ADS_TOKEN_URL, GOOGLE_ADS_UNTIL_DATE, GOOGLE_ADS_CHUNK_DAYS (default 90)."""

    def source(self, start_date: date | None = None,
               until_date: date | None = None) -> GoogleAdsSource:
        first, last = _bounded(date.fromisoformat(_required("GOOGLE_ADS_START_DATE")),
                               _env_date("GOOGLE_ADS_UNTIL_DATE"), start_date, until_date)
        return GoogleAdsSource(
            os.environ.get("GOOGLE_ADS_BASE_URL") or "https://googleads.googleapis.com",
            os.environ.get("GOOGLE_ADS_TOKEN_URL") or "https://oauth2.googleapis.com/token",
            customer_id=_required("GOOGLE_ADS_CUSTOMER_ID"),
            login_customer_id=os.environ.get("GOOGLE_ADS_LOGIN_CUSTOMER_ID") or None,
            developer_token=_secret("GOOGLE_ADS_DEVELOPER_TOKEN"),
            client_id=_required("GOOGLE_ADS_CLIENT_ID"),
            client_secret=_required("GOOGLE_ADS_CLIENT_SECRET"),
            refresh_token=_required("GOOGLE_ADS_REFRESH_TOKEN"),
            start_date=first,
            until_date=last,
            chunk_days=_env_int("GOOGLE_ADS_CHUNK_DAYS", 90),
        )


class MetaAdsResource(dg.ConfigurableResource):
    """One Meta ad account. Env: META_ADS_ACCOUNT_ID, META_ADS_ACCESS_TOKEN (secret),
    META_ADS_START_DATE, optional META_ADS_BASE_URL, META_ADS_UNTIL_DATE, META_ADS_CHUNK_DAYS,
    META_ADS_POLL_INTERVAL_S."""

    def source(self, start_date: date | None = None,
               until_date: date | None = None) -> MetaAdsSource:
        first, last = _bounded(date.fromisoformat(_required("META_ADS_START_DATE")),
                               _env_date("META_ADS_UNTIL_DATE"), start_date, until_date)
        return MetaAdsSource(
            os.environ.get("META_ADS_BASE_URL") or "https://graph.facebook.com",
            ad_account_id=_required("META_ADS_ACCOUNT_ID"),
            access_token=_required("META_ADS_ACCESS_TOKEN"),
            start_date=first,
            until_date=last,
            chunk_days=_env_int("META_ADS_CHUNK_DAYS", 30),
            poll_interval=float(os.environ.get("META_ADS_POLL_INTERVAL_S") or 2.0),
        )


class FilesResource(dg.ConfigurableResource):
    """Orders and offline ad spend files. Env: VORONKA_FILES_DIR, optional VORONKA_FILES_ACCOUNT."""

    def source(self) -> FilesSource:
        return FilesSource(_required("VORONKA_FILES_DIR"),
                           account=os.environ.get("VORONKA_FILES_ACCOUNT") or "files")


class Bitrix24Resource(dg.ConfigurableResource):
    """One Bitrix24 portal (CRM), through an incoming webhook or an OAuth 2.0 application.

    Webhook: BITRIX24_WEBHOOK_URL (secret: ``https://{portal}/rest/{user_id}/{code}/``, the
    code is a password). OAuth: BITRIX24_PORTAL_URL, BITRIX24_CLIENT_ID,
    BITRIX24_CLIENT_SECRET (secret), BITRIX24_REFRESH_TOKEN (secret; seeds an empty token
    store only, rotated tokens are kept under VORONKA_STATE_DIR), optional BITRIX24_OAUTH_URL.
    Optional: BITRIX24_ACCOUNT (default: the portal's host), BITRIX24_RATE_LIMIT_PER_S.
    """

    def source(self) -> Bitrix24Source:
        webhook = _secret("BITRIX24_WEBHOOK_URL")
        portal = webhook or _required("BITRIX24_PORTAL_URL")
        parts = urlsplit(portal)
        account = os.environ.get("BITRIX24_ACCOUNT") or parts.hostname or ""
        if not account:
            raise ValueError("BITRIX24_ACCOUNT is not set and the portal URL names no host")
        rate = float(os.environ.get("BITRIX24_RATE_LIMIT_PER_S") or 2.0)
        if webhook:
            return Bitrix24Source(f"{parts.scheme}://{parts.netloc}", account=account,
                                  webhook_url=webhook, rate_limit_per_s=rate)
        return Bitrix24Source(
            portal,
            account=account,
            client_id=_required("BITRIX24_CLIENT_ID"),
            client_secret=_required("BITRIX24_CLIENT_SECRET"),
            token_store=TokenStore(settings.state_dir() / f"bitrix24_{account}_token.json"),
            initial_refresh_token=_secret("BITRIX24_REFRESH_TOKEN"),
            oauth_url=os.environ.get("BITRIX24_OAUTH_URL") or BITRIX24_OAUTH_URL,
            rate_limit_per_s=rate,
        )


# A source joins the graph when one of its identifying variables is set; any subset works,
# down to the files folder alone. voronka doctor and the graph both use this one rule.
SOURCES: dict[str, tuple[tuple[str, ...], type[dg.ConfigurableResource]]] = {
    "amocrm": (("AMOCRM_BASE_URL", "AMOCRM_SUBDOMAIN"), AmoCRMResource),
    "yandex_direct": (("YANDEX_DIRECT_CLIENT_LOGIN", "YANDEX_DIRECT_TOKEN"), YandexDirectResource),
    "vk_ads": (("VK_ADS_CLIENT_ID",), VKAdsResource),
    "google_ads": (("GOOGLE_ADS_CUSTOMER_ID",), GoogleAdsResource),
    "meta_ads": (("META_ADS_ACCOUNT_ID",), MetaAdsResource),
    "files": (("VORONKA_FILES_DIR",), FilesResource),
    "bitrix24": (("BITRIX24_WEBHOOK_URL", "BITRIX24_CLIENT_ID"), Bitrix24Resource),
}
OPTIONAL_SOURCES = SOURCES  # every source is optional now; the old name stays for callers


def enabled_sources() -> list[str]:
    """The sources whose settings are present in the environment, in graph order."""
    return [name for name, (names, _) in SOURCES.items()
            if any((os.environ.get(var) or "").strip() for var in names)]


def disabled_reason(source: str) -> str:
    """Why a source is not in the graph, for checks that skip it."""
    names = " / ".join(SOURCES[source][0])
    return f"{source} is not configured ({names} unset)"


def source_resources() -> dict[str, dg.ConfigurableResource]:
    return {name: SOURCES[name][1]() for name in enabled_sources()}
