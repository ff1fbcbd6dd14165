"""Meta Custom Audiences: ``POST``/``DELETE /{v}/{ca_id}/users`` (ad_apis.md §B1), and
``POST /{v}/act_<id>/customaudiences`` to create a customer-file audience (``create_audience``).

Rows are dicts keyed by schema key (``EMAIL``, ``PHONE``, ... already SHA-256 lowercase hex;
``LOOKALIKE_VALUE`` unhashed, value-based audiences only) or lists in the order of an explicit
``schema``. At most 10,000 rows go in one call; a multi-batch upload is one ``session``
(``batch_seq`` from 1, ``last_batch_flag`` on the last call). The token travels in the
``Authorization: Bearer`` header, never in a URL.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from extractors.http import HttpOptions

from . import AudienceClientBase, Token, UploadResult, chunks

SOURCE = "meta_audiences"
MAX_ROWS_PER_CALL = 10_000
DEFAULT_VERSION = "v25.0"
# Graph answers throttling and "retry later" as HTTP 400 with these codes (as extractors.meta_ads)
THROTTLE_CODES = frozenset({4, 17, 613, *range(80000, 80015)})
INTERMITTENT = frozenset({(2, 1504043), (2, None), (1, None)})
# the advertiser uploads its own customers' data (not a partner's)
CUSTOMER_FILE_SOURCE = "USER_PROVIDED_ONLY"


def ad_account_path(ad_account_id: str | int) -> str:
    """``act_<id>`` for ``123``, ``"act_123"`` or ``" act_123 "``; anything else is refused, so
    a typo fails before the call instead of creating an audience somewhere else."""
    digits = str(ad_account_id).strip().removeprefix("act_")
    if not digits.isdigit():
        raise ValueError(f"a Meta ad account id is act_<digits>, not {ad_account_id!r}")
    return f"act_{digits}"


def payload_of(rows: Sequence[Mapping[str, Any] | Sequence[Any]],
               schema: Sequence[str] | None = None) -> tuple[list[str], list[list[Any]]]:
    """(schema, data) for ``rows``: dict rows give the schema in first-seen key order and
    ``""`` for a key a row lacks; list rows need ``schema``."""
    if schema is not None:
        keys = list(schema)
        data = [[row.get(k, "") for k in keys] if isinstance(row, Mapping) else list(row)
                for row in rows]
    else:
        keys = []
        for row in rows:
            if not isinstance(row, Mapping):
                raise ValueError("list rows need an explicit schema")
            keys += [k for k in row if k not in keys]
        data = [[row.get(k, "") for k in keys] for row in rows]  # type: ignore[union-attr]
    bad = [i for i, r in enumerate(data) if len(r) != len(keys)]
    if bad:
        raise ValueError(f"row {bad[0]} has {len(data[bad[0]])} values for {len(keys)} keys")
    return keys, data


class MetaAudienceClient(AudienceClientBase):
    """Adds and removes hashed members of Meta custom audiences."""

    source = SOURCE
    max_batch = MAX_ROWS_PER_CALL

    def __init__(self, base_url: str = "https://graph.facebook.com", token: Token = "", *,
                 api_version: str = DEFAULT_VERSION, max_batch: int = MAX_ROWS_PER_CALL,
                 rate_limit_per_s: float | None = 100 / 60,
                 http_options: HttpOptions | None = None,
                 rng: random.Random | None = None,
                 ad_account_id: str | None = None) -> None:
        if not 1 <= max_batch <= MAX_ROWS_PER_CALL:
            raise ValueError(f"max_batch must be 1..{MAX_ROWS_PER_CALL} (Meta's limit)")
        # 100 calls a minute, counted over the minute as the ads extractor does (a one-second
        # window would allow ceil(1.67) = 2 per 1.05 s: 1.9 calls a second in a short sync)
        super().__init__(base_url, token, rate_limit_per_s=rate_limit_per_s,
                         http_options=http_options, rate_window_s=60.0)
        self.ad_account_id = ad_account_path(ad_account_id) if ad_account_id else None
        self.api_version = api_version
        self.max_batch = max_batch
        self._rng = rng or random.SystemRandom()

    def _is_transient(self, resp: requests.Response) -> bool:
        try:
            err = resp.json().get("error") or {}
            code, subcode = int(err.get("code")), err.get("error_subcode")
        except (ValueError, TypeError, AttributeError):
            return False
        return code in THROTTLE_CODES or (code, subcode) in INTERMITTENT

    def __repr__(self) -> str:  # never the token
        return (f"{type(self).__name__}(base_url={self.base_url!r}, "
                f"ad_account_id={self.ad_account_id!r})")

    def create_audience(self, name: str, description: str = "", *, value_based: bool = False,
                        ad_account_id: str | None = None) -> str:
        """Create an empty customer-file custom audience and return its id; ``value_based``
        makes it a seed that accepts ``LOOKALIKE_VALUE`` (the account must have accepted the
        value-based lookalike terms)."""
        account = ad_account_id or self.ad_account_id
        if not account:
            raise ValueError("creating a Meta audience needs an ad account id "
                             "(META_ADS_ACCOUNT_ID or ad_account_id=)")
        form = {"name": name, "subtype": "CUSTOM", "description": description,
                "customer_file_source": CUSTOMER_FILE_SOURCE}
        if value_based:
            form["is_value_based"] = "1"
        path = f"/{self.api_version}/{ad_account_path(account)}/customaudiences"
        answer = self._call("POST", path, data=form)
        if not isinstance(answer, dict) or not answer.get("id"):
            raise self._unexpected(path, "the audience was created without an id in the answer")
        return str(answer["id"])

    def add(self, audience_id: str, rows: Sequence[Mapping[str, Any] | Sequence[Any]], *,
            schema: Sequence[str] | None = None) -> UploadResult:
        return self._upload("POST", "add", audience_id, rows, schema)

    def remove(self, audience_id: str, rows: Sequence[Mapping[str, Any] | Sequence[Any]], *,
               schema: Sequence[str] | None = None) -> UploadResult:
        return self._upload("DELETE", "remove", audience_id, rows, schema)

    def _upload(self, method: str, operation: str, audience_id: str,
                rows: Sequence[Any], schema: Sequence[str] | None) -> UploadResult:
        audience_id = str(audience_id)
        keys, data = payload_of(rows, schema)
        result = UploadResult(audience_id, operation, len(data))
        if not data:
            return result
        session_id = self._rng.randrange(10**14, 10**15)
        batches = list(chunks(data, self.max_batch))
        for seq, batch in enumerate(batches, start=1):
            body = {
                "payload": {"schema": keys, "data": list(batch)},
                "session": {"session_id": session_id, "batch_seq": seq,
                            "last_batch_flag": seq == len(batches),
                            "estimated_num_total": len(data)},
            }
            answer = self._call(method, f"/{self.api_version}/{audience_id}/users", json=body)
            result.batches.append(len(batch))
            result.responses.append(answer)
        return result
