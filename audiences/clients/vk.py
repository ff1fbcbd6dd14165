"""VK Ads users lists (ad_apis.md §B4).

``POST /api/v3/remarketing/users_lists.json`` (multipart: ``file``, ``name``, ``type``,
optional ``base``) with ``Authorization: Bearer``. A base list holds 2,000..5,000,000 lines; a
differential list uploaded with ``base=<id>`` adds its lines to list ``id``, with
``base=-<id>`` removes them, and needs 25..5,000,000 lines of the base list's ``type``. There is
no replace-all (upload a fresh list instead).

Lines are phones (``79011234567``) or e-mails, raw or MD5 hex, one per line, as
``audiences.platforms`` produces them. The client does not pre-check the minimum sizes: the API
says ``not_enough_ids`` and the client raises ``ApiError`` with that code.

Rate limits: every response carries ``X-RateLimit-{RPS,Hourly,Daily}-{Limit,Remaining}``; a
``Remaining: 0`` holds the client-side limiter until the period ends, and a 429 is retried by
the shared layer (``Retry-After`` honoured).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import requests
from urllib3.filepost import encode_multipart_formdata

from extractors.http import HttpOptions

from . import AudienceClientBase, Token, UploadResult

SOURCE = "vk_audiences"
LISTS_PATH = "/api/v3/remarketing/users_lists.json"
MAX_LINES = 5_000_000
MIN_BASE_LINES = 2_000
MIN_DIFF_LINES = 25
LIST_TYPES = frozenset({"phones", "emails", "vk", "ok", "advertising_id", "idfa", "android_id",
                        "device_id", "mac", "dmp_id", "dmp_top", "mm", "mparticle", "human"})
_PERIOD_S = {"RPS": 1.0, "Hourly": 3600.0, "Daily": 86400.0}


def even_chunks(rows: Sequence[str], size: int) -> list[Sequence[str]]:
    """``rows`` in the fewest slices of at most ``size``, their lengths differing by at most
    one, so the last differential list is not left under the 25-line minimum."""
    if not rows:
        return []
    count = -(-len(rows) // size)
    step, extra = divmod(len(rows), count)
    out, start = [], 0
    for i in range(count):
        end = start + step + (1 if i < extra else 0)
        out.append(rows[start:end])
        start = end
    return out


class VKAudienceClient(AudienceClientBase):
    """Creates users lists and changes them with differential lists."""

    source = SOURCE
    max_batch = MAX_LINES

    def __init__(self, base_url: str = "https://ads.vk.com", token: Token = "", *,
                 max_batch: int = MAX_LINES, rate_limit_per_s: float | None = 1.0,
                 name_prefix: str = "voronka",
                 http_options: HttpOptions | None = None) -> None:
        if not 1 <= max_batch <= MAX_LINES:
            raise ValueError(f"max_batch must be 1..{MAX_LINES} (VK Ads limit)")
        self._max_wait = (http_options or HttpOptions()).max_retry_after
        super().__init__(base_url, token, rate_limit_per_s=rate_limit_per_s,
                         http_options=http_options)
        self.max_batch = max_batch
        self.name_prefix = name_prefix

    # -- limits ---------------------------------------------------------------------------
    def _on_response(self, resp: requests.Response) -> None:
        """Hold the limiter until a spent per-second/hour/day budget renews."""
        limiter = self.http.limiter if hasattr(self, "http") else None
        if limiter is None:
            return
        now = time.time()
        for kind, period in _PERIOD_S.items():
            remaining = resp.headers.get(f"X-RateLimit-{kind}-Remaining")
            if remaining is None or remaining.strip() != "0":
                continue
            wait = (math.floor(now / period) + 1) * period - now + 0.05
            limiter.pause(min(wait, self._max_wait))

    # -- calls ----------------------------------------------------------------------------
    def _upload(self, name: str, list_type: str, lines: Sequence[str],
                base: int | None = None) -> dict[str, Any]:
        if list_type not in LIST_TYPES:
            raise ValueError(f"unknown list type {list_type!r}")
        fields: dict[str, Any] = {
            "name": name,
            "type": list_type,
            "file": ("list.txt", ("\n".join(str(x) for x in lines) + "\n").encode("utf-8"),
                     "text/plain"),
        }
        if base is not None:
            fields["base"] = str(base)
        body, content_type = encode_multipart_formdata(fields)
        return self._call("POST", LISTS_PATH, data=body,
                          headers={"Content-Type": content_type})

    def create_list(self, name: str, list_type: str, lines: Sequence[str]) -> dict[str, Any]:
        """A new base list; returns the ``RemarketingUsersList`` object."""
        return self._upload(name, list_type, lines)

    def get_list(self, list_id: int | str) -> dict[str, Any]:
        return self._call("GET", f"/api/v3/remarketing/users_lists/{int(list_id)}.json")

    def add(self, audience_id: int | str, rows: Sequence[str], *,
            list_type: str | None = None) -> UploadResult:
        """Add ``rows`` to list ``audience_id`` through differential lists (``base=+id``)."""
        return self._diff(int(audience_id), rows, +1, list_type)

    def remove(self, audience_id: int | str, rows: Sequence[str], *,
               list_type: str | None = None) -> UploadResult:
        """Remove ``rows`` from list ``audience_id`` (``base=-id``)."""
        return self._diff(int(audience_id), rows, -1, list_type)

    def _diff(self, list_id: int, rows: Sequence[str], sign: int,
              list_type: str | None) -> UploadResult:
        result = UploadResult(str(list_id), "add" if sign > 0 else "remove", len(rows))
        if not rows:
            return result
        if list_type is None:
            list_type = str(self.get_list(list_id)["type"])
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        verb = "add" if sign > 0 else "remove"
        for n, batch in enumerate(even_chunks(list(rows), self.max_batch), start=1):
            name = f"{self.name_prefix}-{verb}-{list_id}-{stamp}-{n}"
            answer = self._upload(name, list_type, batch, base=sign * list_id)
            result.batches.append(len(batch))
            result.responses.append(answer)
        return result
