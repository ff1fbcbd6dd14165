"""The audience destinations, one module each next to its client (``audiences.clients``).

Adding a destination is one module here (a ``Destination`` subclass) plus its emulator and an
entry in ``DESTINATIONS``; nothing else asks which destination it talks to. The ad platforms
(``HashedDestination``: hashes only, API or files) are Meta, Google, Yandex and VK; the CRMs
(amoCRM tags, Bitrix24 contact fields, tasks and deals on entry) and UniSender (e-mail and SMS
lists) are API only (``FILE_DESTINATIONS`` leaves them out).
"""

from __future__ import annotations

from audiences.destinations.base import (
    SINGLE,
    AudienceTooSmall,
    Destination,
    HashedCustomer,
    HashedDestination,
    PlatformFile,
    Rows,
)
from audiences.destinations.crm import AMOCRM, BITRIX24
from audiences.destinations.google import GOOGLE
from audiences.destinations.meta import META
from audiences.destinations.unisender import UNISENDER
from audiences.destinations.vk import VK
from audiences.destinations.yandex import YANDEX

DESTINATIONS: dict[str, Destination] = {
    d.name: d for d in (META, GOOGLE, YANDEX, VK, AMOCRM, BITRIX24, UNISENDER)}
FILE_DESTINATIONS: dict[str, Destination] = {
    name: d for name, d in DESTINATIONS.items() if d.file_export}


def get_destination(name: str) -> Destination:
    """The destination called ``name``; a clear error naming the known ones otherwise."""
    try:
        return DESTINATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown platform {name!r}; expected one of {sorted(DESTINATIONS)}") from None


__all__ = ["DESTINATIONS", "FILE_DESTINATIONS", "SINGLE", "AudienceTooSmall", "Destination",
           "HashedCustomer", "HashedDestination", "PlatformFile", "Rows", "get_destination"]
