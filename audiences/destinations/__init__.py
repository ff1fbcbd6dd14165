"""The audience destinations, one module each next to its client (``audiences.clients``).

Adding a destination is one module here (a ``Destination`` subclass) plus its emulator and an
entry in ``DESTINATIONS``; nothing else asks which destination it talks to.
"""

from __future__ import annotations

from audiences.destinations.base import (
    SINGLE,
    AudienceTooSmall,
    Destination,
    HashedCustomer,
    PlatformFile,
    Rows,
)
from audiences.destinations.google import GOOGLE
from audiences.destinations.meta import META
from audiences.destinations.vk import VK
from audiences.destinations.yandex import YANDEX

DESTINATIONS: dict[str, Destination] = {d.name: d for d in (META, GOOGLE, YANDEX, VK)}


def get_destination(name: str) -> Destination:
    """The destination called ``name``; a clear error naming the known ones otherwise."""
    try:
        return DESTINATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown platform {name!r}; expected one of {sorted(DESTINATIONS)}") from None


__all__ = ["DESTINATIONS", "SINGLE", "AudienceTooSmall", "Destination", "HashedCustomer",
           "PlatformFile", "Rows", "get_destination"]
