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
from extractors.state import TokenStore
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
    rate_limit_per_s: float = 7.0

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
