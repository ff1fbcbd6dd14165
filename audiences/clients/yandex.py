"""Yandex Audiences CRM segments (ad_apis.md §B3).

- ``create_segment(rows, name)``: ``POST /v1/management/segments/upload_csv_file`` (multipart
  ``file``: a CSV whose first line names the columns, ``phone``/``email`` SHA-256 hex), then
  ``POST /v1/management/segment/{id}/confirm`` with ``content_type=crm``, ``hashed=true`` and
  ``hashing_alg=SHA256``;
- ``add``/``remove``/``replace``: ``POST /v1/management/segment/{id}/modify_data`` with
  ``modification_type=addition|subtraction|replace`` and a file of the same structure.

A file needs at least 100 rows unless ``check_size=False``. Auth is ``Authorization: OAuth
<token>``. Errors are ``{"errors": [{"error_type", "message"}], "code", "message"}`` (read by
``extractors.http.parse_error_body``: the code is the ``error_type``).
A file may be up to 1 GB, so a whole membership change is one call (no batching).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from urllib3.filepost import encode_multipart_formdata

from extractors.http import HttpOptions

from . import AudienceClientBase, Token, UploadResult

SOURCE = "yandex_audiences"
UPLOAD_PATH = "/v1/management/segments/upload_csv_file"
MIN_ROWS = 100
MODIFICATIONS = ("addition", "subtraction", "replace")

Rows = str | bytes | Sequence[Mapping[str, Any]]


def csv_bytes(rows: Rows) -> tuple[bytes, int]:
    """(UTF-8 CSV with a header line, number of data rows) for ``rows``: a ready CSV (text or
    bytes, header first) or dicts whose keys become the columns in first-seen order."""
    if isinstance(rows, bytes | str):
        data = rows.encode("utf-8") if isinstance(rows, str) else rows
        lines = [ln for ln in data.decode("utf-8").splitlines() if ln.strip()]
        return data, max(len(lines) - 1, 0)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return out.getvalue().encode("utf-8"), len(rows)


class YandexAudienceClient(AudienceClientBase):
    """Creates CRM segments and changes their membership."""

    source = SOURCE
    max_batch = None  # one file per change (up to 1 GB)

    def __init__(self, base_url: str = "https://api-audience.yandex.ru", token: Token = "", *,
                 rate_limit_per_s: float | None = 5.0,
                 http_options: HttpOptions | None = None) -> None:
        super().__init__(base_url, token, rate_limit_per_s=rate_limit_per_s,
                         http_options=http_options, auth_scheme="OAuth")

    @staticmethod
    def _file(data: bytes) -> tuple[bytes, dict[str, str]]:
        body, content_type = encode_multipart_formdata(
            {"file": ("segment.csv", data, "text/csv")})
        return body, {"Content-Type": content_type}

    def create_segment(self, rows: Rows, name: str, *, check_size: bool = True,
                       hashing_alg: str = "SHA256") -> dict[str, Any]:
        """Upload and confirm a CRM segment; return the confirmed segment object."""
        data, _ = csv_bytes(rows)
        body, headers = self._file(data)
        params = None if check_size else {"check_size": "false"}
        uploaded = self._call("POST", UPLOAD_PATH, data=body, headers=headers, params=params)
        segment_id = uploaded["segment"]["id"]
        confirm = {"segment": {"id": segment_id, "name": name, "content_type": "crm",
                               "hashed": True, "hashing_alg": hashing_alg}}
        answer = self._call("POST", f"/v1/management/segment/{segment_id}/confirm",
                            json=confirm, params=params)
        return answer["segment"]

    def modify(self, segment_id: str | int, rows: Rows, modification_type: str, *,
               check_size: bool = True) -> UploadResult:
        if modification_type not in MODIFICATIONS:
            raise ValueError(f"modification_type must be one of {MODIFICATIONS}")
        data, count = csv_bytes(rows)
        operation = {"addition": "add", "subtraction": "remove"}.get(modification_type,
                                                                     modification_type)
        result = UploadResult(str(segment_id), operation, count)
        body, headers = self._file(data)
        params = {"modification_type": modification_type}
        if not check_size:
            params["check_size"] = "false"
        answer = self._call("POST", f"/v1/management/segment/{segment_id}/modify_data",
                            data=body, headers=headers, params=params)
        result.batches.append(count)
        result.responses.append(answer)
        return result

    def add(self, audience_id: str | int, rows: Rows, *, check_size: bool = True
            ) -> UploadResult:
        return self.modify(audience_id, rows, "addition", check_size=check_size)

    def remove(self, audience_id: str | int, rows: Rows, *, check_size: bool = True
               ) -> UploadResult:
        return self.modify(audience_id, rows, "subtraction", check_size=check_size)

    def replace(self, audience_id: str | int, rows: Rows, *, check_size: bool = True
                ) -> UploadResult:
        return self.modify(audience_id, rows, "replace", check_size=check_size)
