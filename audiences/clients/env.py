"""Audience upload clients configured from environment variables (listed in ``.env.example``).

``client_from_env("meta" | "google" | "yandex" | "vk" | "amocrm" | "bitrix24" | "unisender",
env)`` reads the platform's variables
from ``env`` (``os.environ`` by default) and returns its client. A missing variable is a
``ValueError`` that names every missing variable and never a value. Tokens go only into the
client, which masks them in every log line, exception and ``repr``.

Where a platform's token is normally obtained by an extractor, the same code gets it here, so
one set of credentials serves both:

- Google: ``GOOGLE_DATA_MANAGER_ACCESS_TOKEN`` as is, else an access token refreshed from
  ``GOOGLE_ADS_CLIENT_ID``/``_CLIENT_SECRET``/``_REFRESH_TOKEN`` at ``GOOGLE_ADS_TOKEN_URL``
  by ``extractors.google_ads`` (the refresh token must have been granted the
  ``https://www.googleapis.com/auth/datamanager`` scope too);
- VK: ``VK_ADS_ACCESS_TOKEN`` as is, else the client-credentials token of
  ``extractors.vk_ads``, kept in the same token store (``VK_ADS_ACCOUNT`` names it): a VK
  cabinet holds at most 5 live tokens, so the extractor and the uploads must share one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from extractors.google_ads import GoogleAdsSource, normalise_customer_id
from extractors.http import HttpOptions
from extractors.state import TokenStore
from extractors.vk_ads import VKAdsSource
from voronka import settings

from . import AudienceClientBase, Token
from .google import GoogleAudienceClient
from .meta import MetaAudienceClient
from .vk import VKAudienceClient
from .yandex import YandexAudienceClient

Env = Mapping[str, str]
META_URL = "https://graph.facebook.com"
GOOGLE_URL = "https://datamanager.googleapis.com"
GOOGLE_ADS_URL = "https://googleads.googleapis.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
YANDEX_URL = "https://api-audience.yandex.ru"
VK_URL = "https://ads.vk.com"
GOOGLE_OAUTH = ("GOOGLE_ADS_CLIENT_ID", "GOOGLE_ADS_CLIENT_SECRET", "GOOGLE_ADS_REFRESH_TOKEN")
VK_CREDENTIALS = ("VK_ADS_CLIENT_ID", "VK_ADS_CLIENT_SECRET", "VK_ADS_ACCOUNT")


def _get(env: Env, name: str) -> str | None:
    """The variable's value; unset and blank are the same (an empty line in ``.env``)."""
    value = (env.get(name) or "").strip()
    return value or None


def _first(env: Env, *names: str) -> str | None:
    return next((v for v in (_get(env, n) for n in names) if v), None)


def _check(platform: str, missing: list[str]) -> None:
    if missing:
        raise ValueError(f"{platform} audience uploads need {', '.join(missing)} "
                         "(not set)")


def _credentials(env: Env, token_name: str, names: tuple[str, ...]) -> list[str]:
    """What is missing when ``token_name`` is unset: all of ``names`` if none is set (naming
    the token as the alternative), else the ``names`` still missing (credentials meant)."""
    if _get(env, token_name):
        return []
    missing = [n for n in names if not _get(env, n)]
    if len(missing) == len(names):
        return [f"{token_name} (or {', '.join(names[:-1])} and {names[-1]})"]
    return missing


def meta_from_env(env: Env, *, http_options: HttpOptions | None = None,
                  base_url: str | None = None) -> MetaAudienceClient:
    token = _first(env, "META_AUDIENCES_ACCESS_TOKEN", "META_ADS_ACCESS_TOKEN")
    account = _get(env, "META_ADS_ACCOUNT_ID")
    _check("Meta", [n for n, v in (
        ("META_AUDIENCES_ACCESS_TOKEN (or META_ADS_ACCESS_TOKEN)", token),
        ("META_ADS_ACCOUNT_ID", account)) if not v])
    url = base_url or _first(env, "META_AUDIENCES_BASE_URL", "META_ADS_BASE_URL") or META_URL
    return MetaAudienceClient(url, token or "", ad_account_id=account,
                              http_options=http_options)


def google_from_env(env: Env, *, http_options: HttpOptions | None = None,
                    base_url: str | None = None) -> GoogleAudienceClient:
    customer = _get(env, "GOOGLE_ADS_CUSTOMER_ID")
    missing = [] if customer else ["GOOGLE_ADS_CUSTOMER_ID"]
    _check("Google", missing + _credentials(env, "GOOGLE_DATA_MANAGER_ACCESS_TOKEN",
                                            GOOGLE_OAUTH))
    login = _get(env, "GOOGLE_ADS_LOGIN_CUSTOMER_ID")
    token: Token | None = _get(env, "GOOGLE_DATA_MANAGER_ACCESS_TOKEN")
    source = None if token else _google_ads_source(env, http_options)
    client = GoogleAudienceClient(
        base_url or _get(env, "GOOGLE_DATA_MANAGER_BASE_URL") or GOOGLE_URL,
        token or _provider(source),
        operating_account_id=normalise_customer_id(customer or ""),
        login_account_id=normalise_customer_id(login) if login else None,
        http_options=http_options)
    _own(client, env, ("GOOGLE_ADS_CLIENT_SECRET", "GOOGLE_ADS_REFRESH_TOKEN"), source)
    return client


def _google_ads_source(env: Env, http_options: HttpOptions | None) -> GoogleAdsSource:
    """The Google Ads extractor, lent for its ``access_token``: the cached OAuth refresh,
    renewed shortly before it expires, with its hint when Google refuses the refresh token."""
    login = _get(env, "GOOGLE_ADS_LOGIN_CUSTOMER_ID")
    return GoogleAdsSource(
        _get(env, "GOOGLE_ADS_BASE_URL") or GOOGLE_ADS_URL,
        _get(env, "GOOGLE_ADS_TOKEN_URL") or GOOGLE_TOKEN_URL,
        customer_id=_get(env, "GOOGLE_ADS_CUSTOMER_ID") or "",
        login_customer_id=login,
        client_id=_get(env, "GOOGLE_ADS_CLIENT_ID") or "",
        client_secret=_get(env, "GOOGLE_ADS_CLIENT_SECRET") or "",
        refresh_token=_get(env, "GOOGLE_ADS_REFRESH_TOKEN") or "",
        start_date=date.today(),  # unused: only the token is borrowed
        http_options=http_options,
    )


def yandex_from_env(env: Env, *, http_options: HttpOptions | None = None,
                    base_url: str | None = None) -> YandexAudienceClient:
    token = _get(env, "YANDEX_AUDIENCE_TOKEN")
    _check("Yandex", [] if token else ["YANDEX_AUDIENCE_TOKEN"])
    return YandexAudienceClient(base_url or _get(env, "YANDEX_AUDIENCE_BASE_URL") or YANDEX_URL,
                                token or "", http_options=http_options)


def vk_from_env(env: Env, *, http_options: HttpOptions | None = None,
                base_url: str | None = None) -> VKAudienceClient:
    _check("VK", _credentials(env, "VK_ADS_ACCESS_TOKEN", VK_CREDENTIALS))
    url = base_url or _get(env, "VK_ADS_BASE_URL") or VK_URL
    token: Token | None = _get(env, "VK_ADS_ACCESS_TOKEN")
    source = None if token else _vk_ads_source(env, url, http_options)
    client = VKAudienceClient(url, token or _provider(source), http_options=http_options)
    _own(client, env, ("VK_ADS_CLIENT_SECRET",), source)
    return client


def _vk_ads_source(env: Env, base_url: str, http_options: HttpOptions | None) -> VKAdsSource:
    """The VK Ads extractor, lent for its ``access_token``: stored, refreshed or newly granted
    in the token store the extractor uses for the same cabinet."""
    account = _get(env, "VK_ADS_ACCOUNT") or ""
    return VKAdsSource(
        base_url, account=account,
        client_id=_get(env, "VK_ADS_CLIENT_ID") or "",
        client_secret=_get(env, "VK_ADS_CLIENT_SECRET") or "",
        token_store=TokenStore(_state_dir(env) / f"vk_ads_{account}_token.json"),
        start_date=date.today(),  # unused: only the token is borrowed
        http_options=http_options,
    )


def _state_dir(env: Env) -> Path:
    """``VORONKA_STATE_DIR`` of ``env`` (relative to the repository, as ``voronka.settings``
    resolves it), else the settings' own."""
    value = _get(env, "VORONKA_STATE_DIR")
    if value is None:
        return settings.state_dir()
    path = Path(value).expanduser()
    return path if path.is_absolute() else settings.REPO_ROOT / path


def _provider(source: GoogleAdsSource | VKAdsSource | None) -> Token:
    """The lent extractor's ``access_token`` method (asked before every call: it renews the
    token shortly before it expires)."""
    if source is None:
        raise ValueError("no token and no source to get one from")
    return source.access_token


def _own(client: AudienceClientBase, env: Env, secrets: tuple[str, ...],
         source: GoogleAdsSource | VKAdsSource | None) -> None:
    """Secrets the client never sends still never show in what it reports, and the lent
    extractor's sessions close with the client."""
    for name in secrets:
        client.add_secret(_get(env, name))
    if source is not None:
        client.on_close(source.close)


def amocrm_from_env(env: Env, *, http_options: HttpOptions | None = None,
                    base_url: str | None = None) -> Any:
    """amoCRM writes with the extractor's AMOCRM_* settings and token store."""
    from .amocrm import AmoCRMWriteClient

    return AmoCRMWriteClient.from_env(_with(env, "AMOCRM_BASE_URL", base_url),
                                      http_options=http_options)


def bitrix24_from_env(env: Env, *, http_options: HttpOptions | None = None,
                      base_url: str | None = None) -> Any:
    """Bitrix24 writes with the extractor's BITRIX24_* settings (webhook or OAuth)."""
    from .bitrix24 import Bitrix24WriteClient

    return Bitrix24WriteClient.from_env(_with(env, "BITRIX24_PORTAL_URL", base_url),
                                        http_options=http_options)


def unisender_from_env(env: Env, *, http_options: HttpOptions | None = None,
                       base_url: str | None = None) -> Any:
    """UniSender: UNISENDER_API_KEY, UNISENDER_BASE_URL, UNISENDER_LANG."""
    from .unisender import UniSenderClient

    return UniSenderClient.from_env(_with(env, "UNISENDER_BASE_URL", base_url),
                                    http_options=http_options)


def _with(env: Env, name: str, value: str | None) -> Env:
    return {**env, name: value} if value else env


BUILDERS: dict[str, Callable[..., Any]] = {
    "meta": meta_from_env,
    "google": google_from_env,
    "yandex": yandex_from_env,
    "vk": vk_from_env,
    "amocrm": amocrm_from_env,
    "bitrix24": bitrix24_from_env,
    "unisender": unisender_from_env,
}


def client_from_env(platform: str, env: Env | None = None, *,
                    http_options: HttpOptions | None = None,
                    base_url: str | None = None) -> Any:
    """The ``platform``'s audience client from ``env`` (``os.environ`` when None);
    ``base_url`` overrides the variable (an emulator)."""
    build = BUILDERS.get(platform)
    if build is None:
        raise ValueError(f"unknown audience platform {platform!r}; "
                         f"expected one of {', '.join(BUILDERS)}")
    return build(os.environ if env is None else env, http_options=http_options,
                 base_url=base_url)
