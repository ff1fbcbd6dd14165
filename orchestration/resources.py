"""Dagster resources, configured from environment variables (see .env.example).

Secrets are declared with `EnvVar`, so the Dagster UI and run metadata show the variable's
name, never its value.
"""

from __future__ import annotations

import os
from datetime import date

import dagster as dg

from extractors.amocrm import AmoCRMSource
from extractors.state import TokenStore
from extractors.yandex_direct import YandexDirectSource
from voronka import settings
from warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The configured warehouse (DuckDB file by default, or PostgreSQL)."""

    def open(self) -> Warehouse:
        return settings.WarehouseSettings.from_env().open()

    def export_for_dbt(self) -> None:
        settings.WarehouseSettings.from_env().export_for_dbt()


class AmoCRMResource(dg.ConfigurableResource):
    """One amoCRM account over OAuth2 (rotating refresh token) or a long-lived token."""

    base_url: str
    subdomain: str
    client_id: str = ""
    client_secret: str = ""
    redirect_uri: str = ""
    refresh_token: str = ""  # only seeds an empty token store; rotated tokens live in the store
    long_lived_token: str = ""
    rate_limit_per_s: float = 7.0

    def source(self) -> AmoCRMSource:
        return AmoCRMSource(
            self.base_url,
            account=self.subdomain,
            client_id=self.client_id,
            client_secret=self.client_secret,
            redirect_uri=self.redirect_uri,
            token_store=TokenStore(settings.state_dir() / f"amocrm_{self.subdomain}_token.json"),
            initial_refresh_token=self.refresh_token or None,
            long_lived_token=self.long_lived_token or None,
            rate_limit_per_s=self.rate_limit_per_s,
        )


class YandexDirectResource(dg.ConfigurableResource):
    """One Yandex Direct advertiser (Reports API v5)."""

    base_url: str = "https://api.direct.yandex.com"
    token: str
    client_login: str
    start_date: str
    until_date: str = ""  # default: yesterday in Moscow

    def source(self) -> YandexDirectSource:
        return YandexDirectSource(
            self.base_url,
            token=self.token,
            client_login=self.client_login,
            start_date=date.fromisoformat(self.start_date),
            until_date=date.fromisoformat(self.until_date) if self.until_date else None,
        )


def _optional_env(name: str) -> str | dg.EnvVar:
    """An EnvVar when the variable is set (secret stays out of metadata), else empty."""
    return dg.EnvVar(name) if os.environ.get(name) else ""


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """Resource instances wired to environment variables (values resolved at run time)."""
    return {
        "warehouse": WarehouseResource(),
        "amocrm": AmoCRMResource(
            base_url=dg.EnvVar("AMOCRM_BASE_URL"),
            subdomain=dg.EnvVar("AMOCRM_SUBDOMAIN"),
            client_id=dg.EnvVar("AMOCRM_CLIENT_ID"),
            client_secret=dg.EnvVar("AMOCRM_CLIENT_SECRET"),
            redirect_uri=dg.EnvVar("AMOCRM_REDIRECT_URI"),
            refresh_token=_optional_env("AMOCRM_REFRESH_TOKEN"),
            long_lived_token=_optional_env("AMOCRM_LONG_LIVED_TOKEN"),
        ),
        "yandex_direct": YandexDirectResource(
            base_url=os.environ.get("YANDEX_DIRECT_BASE_URL", "https://api.direct.yandex.com"),
            token=dg.EnvVar("YANDEX_DIRECT_TOKEN"),
            client_login=dg.EnvVar("YANDEX_DIRECT_CLIENT_LOGIN"),
            start_date=dg.EnvVar("YANDEX_DIRECT_START_DATE"),
            until_date=os.environ.get("YANDEX_DIRECT_UNTIL_DATE", ""),
        ),
    }
