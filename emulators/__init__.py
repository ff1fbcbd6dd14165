"""Local HTTP emulators of the source APIs on 127.0.0.1: amoCRM v4, Yandex Direct Reports v5,
VK Ads v2, Google Ads searchStream, Meta Insights (and Bitrix24 REST), and the audience upload
APIs (Meta custom audiences, Google Data Manager, Yandex Audiences, VK Ads users lists).

Used by ``voronka demo`` and by the extractor tests. Standard library only.
"""

from __future__ import annotations

import threading

from ._base import FAULT_KINDS, FaultPlan
from .amocrm import AmoCRMEmulator
from .audiences import (
    GoogleDataManagerEmulator,
    MetaAudiencesEmulator,
    VKAudiencesEmulator,
    YandexAudiencesEmulator,
)
from .bitrix24 import Bitrix24Emulator
from .google_ads import GoogleAdsEmulator
from .meta_ads import MetaAdsEmulator
from .unisender import UniSenderEmulator
from .vk_ads import VKAdsEmulator
from .yandex_direct import YandexDirectEmulator

__all__ = [
    "FAULT_KINDS",
    "AmoCRMEmulator",
    "Bitrix24Emulator",
    "FaultPlan",
    "GoogleAdsEmulator",
    "GoogleDataManagerEmulator",
    "MetaAdsEmulator",
    "MetaAudiencesEmulator",
    "UniSenderEmulator",
    "VKAdsEmulator",
    "VKAudiencesEmulator",
    "YandexAudiencesEmulator",
    "YandexDirectEmulator",
    "serve_forever",
]


def serve_forever(
    amo: AmoCRMEmulator | None = None,
    direct: YandexDirectEmulator | None = None,
    *,
    stop_event: threading.Event | None = None,
) -> None:
    """Start the given emulators (if not running) and block until Ctrl+C (or ``stop_event``).

    Both are stopped on the way out.
    """
    emulators = [e for e in (amo, direct) if e is not None]
    stop_event = stop_event or threading.Event()
    try:
        for emulator in emulators:
            if not emulator.running:
                emulator.start()
        while not stop_event.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for emulator in emulators:
            emulator.stop()
