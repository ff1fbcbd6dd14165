"""Dagster resources, configured from environment variables (see .env.example).

Secrets (client secret, refresh and long-lived tokens, the Direct token) are not config fields
at all: they are read from the environment at the moment a source is built, so they can never
show up in the Dagster UI, run config or metadata.
"""

from __future__ import annotations

import os
from datetime import date

import dagster as dg

from extractors.amocrm import AmoCRMSource
from extractors.files import FilesSource
from extractors.google_ads import GoogleAdsSource
from extractors.meta_ads import MetaAdsSource
from extractors.state import TokenStore
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

    Secrets: AMOCRM_CLIENT_SECRET, AMOCRM_REFRESH_TOKEN (seeds an empty token store only),
    AMOCRM_LONG_LIVED_TOKEN.
    """

    base_url: str
    subdomain: str
    client_id: str = ""
    redirect_uri: str = ""
    # amoCRM allows 7 req/s per integration; staying at 6.5 leaves headroom for request jitter
    # and for other integrations on the same account (crm_apis.md §1.11).
    rate_limit_per_s: float = 6.5

    def source(self) -> AmoCRMSource:
        return AmoCRMSource(
            self.base_url,
            account=self.subdomain,
            client_id=self.client_id or None,
            client_secret=_secret("AMOCRM_CLIENT_SECRET"),
            redirect_uri=self.redirect_uri or None,
            token_store=TokenStore(settings.state_dir() / f"amocrm_{self.subdomain}_token.json"),
            initial_refresh_token=_secret("AMOCRM_REFRESH_TOKEN"),
            long_lived_token=_secret("AMOCRM_LONG_LIVED_TOKEN"),
            rate_limit_per_s=self.rate_limit_per_s,
        )


class YandexDirectResource(dg.ConfigurableResource):
    """One Yandex Direct advertiser (Reports API v5). Secret: YANDEX_DIRECT_TOKEN.

    Optional: YANDEX_DIRECT_BASE_URL (the API or an emulator), YANDEX_DIRECT_UNTIL_DATE
    (default: yesterday in Moscow).
    """

    client_login: str
    start_date: str
    chunk_days: int = 366

    def source(self) -> YandexDirectSource:
        token = _secret("YANDEX_DIRECT_TOKEN")
        if not token:
            raise ValueError("YANDEX_DIRECT_TOKEN is not set")
        until = os.environ.get("YANDEX_DIRECT_UNTIL_DATE")
        return YandexDirectSource(
            os.environ.get("YANDEX_DIRECT_BASE_URL") or "https://api.direct.yandex.com",
            token=token,
            client_login=self.client_login,
            start_date=date.fromisoformat(self.start_date),
            until_date=date.fromisoformat(until) if until else None,
            chunk_days=self.chunk_days,
        )


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """Resource instances wired to environment variables (resolved when a run starts)."""
    return {
        "warehouse": WarehouseResource(),
        "amocrm": AmoCRMResource(
            base_url=dg.EnvVar("AMOCRM_BASE_URL"),
            subdomain=dg.EnvVar("AMOCRM_SUBDOMAIN"),
            client_id=dg.EnvVar("AMOCRM_CLIENT_ID"),
            redirect_uri=dg.EnvVar("AMOCRM_REDIRECT_URI"),
        ),
        "yandex_direct": YandexDirectResource(
            client_login=dg.EnvVar("YANDEX_DIRECT_CLIENT_LOGIN"),
            start_date=dg.EnvVar("YANDEX_DIRECT_START_DATE"),
        ),
    }


def _env_date(name: str) -> date | None:
    value = os.environ.get(name)
    return date.fromisoformat(value) if value else None


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"{name} is not set")
    return value


class VKAdsResource(dg.ConfigurableResource):
    """One VK Ads cabinet. Env: VK_ADS_ACCOUNT, VK_ADS_CLIENT_ID, VK_ADS_CLIENT_SECRET (secret),
    VK_ADS_START_DATE, optional VK_ADS_BASE_URL, VK_ADS_UNTIL_DATE, VK_ADS_TODAY."""

    def source(self) -> VKAdsSource:
        account = _required("VK_ADS_ACCOUNT")
        return VKAdsSource(
            os.environ.get("VK_ADS_BASE_URL") or "https://ads.vk.com",
            account=account,
            client_id=_required("VK_ADS_CLIENT_ID"),
            client_secret=_required("VK_ADS_CLIENT_SECRET"),
            token_store=TokenStore(settings.state_dir() / f"vk_ads_{account}_token.json"),
            start_date=date.fromisoformat(_required("VK_ADS_START_DATE")),
            until_date=_env_date("VK_ADS_UNTIL_DATE"),
            today=_env_date("VK_ADS_TODAY"),
        )


class GoogleAdsResource(dg.ConfigurableResource):
    """One Google Ads customer. Env: GOOGLE_ADS_CUSTOMER_ID, GOOGLE_ADS_CLIENT_ID,
    GOOGLE_ADS_CLIENT_SECRET, GOOGLE_ADS_REFRESH_TOKEN (secrets), GOOGLE_ADS_START_DATE,
    optional GOOGLE_ADS_LOGIN_CUSTOMER_ID, GOOGLE_ADS_DEVELOPER_TOKEN, GOOGLE_ADS_BASE_URL,
    GOOGLE_ADS_TOKEN_URL, GOOGLE_ADS_UNTIL_DATE."""

    def source(self) -> GoogleAdsSource:
        return GoogleAdsSource(
            os.environ.get("GOOGLE_ADS_BASE_URL") or "https://googleads.googleapis.com",
            os.environ.get("GOOGLE_ADS_TOKEN_URL") or "https://oauth2.googleapis.com/token",
            customer_id=_required("GOOGLE_ADS_CUSTOMER_ID"),
            login_customer_id=os.environ.get("GOOGLE_ADS_LOGIN_CUSTOMER_ID") or None,
            developer_token=_secret("GOOGLE_ADS_DEVELOPER_TOKEN"),
            client_id=_required("GOOGLE_ADS_CLIENT_ID"),
            client_secret=_required("GOOGLE_ADS_CLIENT_SECRET"),
            refresh_token=_required("GOOGLE_ADS_REFRESH_TOKEN"),
            start_date=date.fromisoformat(_required("GOOGLE_ADS_START_DATE")),
            until_date=_env_date("GOOGLE_ADS_UNTIL_DATE"),
        )


class MetaAdsResource(dg.ConfigurableResource):
    """One Meta ad account. Env: META_ADS_ACCOUNT_ID, META_ADS_ACCESS_TOKEN (secret),
    META_ADS_START_DATE, optional META_ADS_BASE_URL, META_ADS_UNTIL_DATE, META_ADS_CHUNK_DAYS,
    META_ADS_POLL_INTERVAL_S."""

    def source(self) -> MetaAdsSource:
        return MetaAdsSource(
            os.environ.get("META_ADS_BASE_URL") or "https://graph.facebook.com",
            ad_account_id=_required("META_ADS_ACCOUNT_ID"),
            access_token=_required("META_ADS_ACCESS_TOKEN"),
            start_date=date.fromisoformat(_required("META_ADS_START_DATE")),
            until_date=_env_date("META_ADS_UNTIL_DATE"),
            chunk_days=int(os.environ.get("META_ADS_CHUNK_DAYS") or 30),
            poll_interval=float(os.environ.get("META_ADS_POLL_INTERVAL_S") or 2.0),
        )


class FilesResource(dg.ConfigurableResource):
    """Orders and offline ad spend files. Env: VORONKA_FILES_DIR, optional VORONKA_FILES_ACCOUNT."""

    def source(self) -> FilesSource:
        return FilesSource(_required("VORONKA_FILES_DIR"),
                           account=os.environ.get("VORONKA_FILES_ACCOUNT") or "files")


# A source joins the graph when its identifying variable is set (amoCRM and Direct always).
OPTIONAL_SOURCES: dict[str, tuple[str, type[dg.ConfigurableResource]]] = {
    "vk_ads": ("VK_ADS_CLIENT_ID", VKAdsResource),
    "google_ads": ("GOOGLE_ADS_CUSTOMER_ID", GoogleAdsResource),
    "meta_ads": ("META_ADS_ACCOUNT_ID", MetaAdsResource),
    "files": ("VORONKA_FILES_DIR", FilesResource),
}


def enabled_optional_sources() -> list[str]:
    return [name for name, (var, _) in OPTIONAL_SOURCES.items() if os.environ.get(var)]


def optional_resources() -> dict[str, dg.ConfigurableResource]:
    return {name: OPTIONAL_SOURCES[name][1]() for name in enabled_optional_sources()}
