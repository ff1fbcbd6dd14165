"""Extractors: the shared HTTP layer and one module per source API.

Each source exposes ``name``, ``account``, ``ENTITIES`` and ``pages(entity, cursor)`` yielding
``Page`` objects of ``RawRecord``; ``sync_entity`` lands them and advances the cursor.
"""

from extractors.amocrm import AmoCRMSource
from extractors.http import (
    ApiError,
    AuthorizationError,
    HttpClient,
    HttpOptions,
    Page,
    RateLimiter,
    iter_hal_pages,
    limiter_for,
)
from extractors.state import TokenSet, TokenStore
from extractors.sync import SyncResult, sync_entity
from extractors.yandex_direct import YandexDirectSource

__all__ = [
    "AmoCRMSource",
    "ApiError",
    "AuthorizationError",
    "HttpClient",
    "HttpOptions",
    "Page",
    "RateLimiter",
    "SyncResult",
    "TokenSet",
    "TokenStore",
    "YandexDirectSource",
    "iter_hal_pages",
    "limiter_for",
    "sync_entity",
]
