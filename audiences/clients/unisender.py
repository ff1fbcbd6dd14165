"""UniSender lists (activation_apis.md §3): segment members in, segment leavers out.

- ``list_id(title)``: ``getLists``, then ``createList`` when no list has that title (titles are
  unique in an account, so one list per segment is found again on the next run);
- ``import_contacts(list_id, kind, contacts)``: ``importContacts`` in calls of at most 500
  rows with the columns ``[kind, f"{kind}_list_ids"]`` (membership is a column, pitfall 4),
  merged with the contact's other lists (``overwrite_lists=0``);
- ``exclude(list_id, kind, contacts)``: one ``exclude`` per contact: it leaves that list
  without being marked unsubscribed (``unsubscribe`` cannot be undone through the API, so this
  client never calls it, pitfall 2); "not found" counts as done (pitfall 3).

Every call is a form POST to ``/{lang}/api/{method}?format=json``: the key and the contacts
travel in the body, never in a URL, so no request line logged anywhere carries them. The key
is masked in every log line and exception, and e-mails and phones in UniSender's messages
(``Contact "x@y.ru" not found``) are masked before they reach an ``ApiError``; the import's
per-row log is passed on as index + code only.

Errors come as ``{"error", "code"}`` (HTTP 200 as far as is known, [unverified]; any 4xx is
read the same way). ``retry_later`` and ``api_call_limit_exceeded_*`` did nothing on the
server, so they are retried with the shared backoff; any other code raises ``ApiError`` with
``error_code`` = UniSender's code. ``createList`` is a create (``idempotent=False``: never
re-sent after a dropped connection or a 5xx); when it fails that way, or says the title exists
(another run made it meanwhile), ``getLists`` is read again before giving up.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import requests

from extractors.http import ApiError, HttpOptions

from . import CLIENT_ERRORS, AudienceClientBase, UploadResult, chunks

log = logging.getLogger("voronka.audiences")

SOURCE = "unisender"
DEFAULT_URL = "https://api.unisender.com"
LANGS = ("ru", "en")
KINDS = ("email", "phone")
TRANSIENT_CODES = frozenset({"retry_later", "api_call_limit_exceeded_for_api_key",
                             "api_call_limit_exceeded_for_ip"})
RESULT_COUNTS = ("total", "inserted", "updated", "deleted", "new_emails", "invalid")
MASK = "***"
_EMAIL_ANYWHERE = re.compile(r"[^\s\"'<>()\[\]{},;:]+@[^\s\"'<>()\[\]{},;:]+")
_PHONE_ANYWHERE = re.compile(r"\+?\d[\d\s().-]{8,}\d")
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def mask_identifiers(text: str | None, known: Iterable[str] = ()) -> str:
    """``text`` with the ``known`` contacts and anything shaped like an e-mail address or a
    phone number (10+ digits) replaced by ``***``: UniSender's messages quote the contact."""
    if not text:
        return ""
    for value in sorted({k.strip() for k in known if k and len(k.strip()) >= 3}, key=len,
                        reverse=True):
        text = text.replace(value, MASK)
    text = _EMAIL_ANYWHERE.sub(MASK, text)
    return _PHONE_ANYWHERE.sub(MASK, text)


def _json(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")


class UniSenderClient(AudienceClientBase):
    """UniSender API on the shared HTTP layer: POST form bodies only (the key and the raw
    identifiers never appear in a URL, log line or exception text)."""

    source = SOURCE
    max_import = 500
    max_batch = max_import

    def __init__(self, base_url: str, api_key: str, *, lang: str = "ru",
                 http_options: HttpOptions | None = None,
                 rate_limit_per_s: float | None = 15.0) -> None:
        if lang not in LANGS:
            raise ValueError(f"UniSender lang must be one of {LANGS}")
        # 15/s stays under the account's 1200 calls/min (20/s) with room for other clients
        super().__init__(base_url, api_key, rate_limit_per_s=rate_limit_per_s,
                         http_options=http_options)
        self._api_key = api_key
        self.lang = lang

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, http_options: HttpOptions | None = None
                 ) -> UniSenderClient:
        """From ``UNISENDER_API_KEY`` (required), ``UNISENDER_BASE_URL`` and
        ``UNISENDER_LANG`` (``ru``|``en``); a problem names the variable, never its value."""
        key = (env.get("UNISENDER_API_KEY") or "").strip()
        if not key:
            raise ValueError("UniSender needs UNISENDER_API_KEY (not set)")
        lang = (env.get("UNISENDER_LANG") or "").strip().lower() or "ru"
        if lang not in LANGS:
            raise ValueError(f"UNISENDER_LANG must be one of {', '.join(LANGS)}")
        base_url = (env.get("UNISENDER_BASE_URL") or "").strip() or DEFAULT_URL
        return cls(base_url, key, lang=lang, http_options=http_options)

    def _auth_headers(self) -> dict[str, str]:
        return {}  # the key goes in the form body only

    # -- calls --------------------------------------------------------------------------------
    def _path(self, method: str) -> str:
        return f"/{self.lang}/api/{method}"

    def _api(self, method: str, fields: Sequence[tuple[str, str]] = (), *,
             idempotent: bool = True, contacts: Sequence[str] = ()) -> Any:
        """One API call; returns ``result``. ``contacts`` are masked in any error text."""
        path = self._path(method)
        form = [("api_key", self._api_key), *fields]
        attempt = 0
        while True:
            try:
                resp = self.http.request("POST", path, params={"format": "json"}, data=form,
                                         ok_statuses=CLIENT_ERRORS, idempotent=idempotent)
            except ApiError as exc:  # retries spent, a 5xx on a create, a dropped connection
                raise self._scrubbed(exc, contacts) from None
            body = _json(resp)
            if isinstance(body, dict) and not body.get("error") and resp.status_code < 400:
                return body.get("result")
            code, message = self._envelope(body, resp)
            if code not in TRANSIENT_CODES or attempt >= self._max_retries:
                raise self._api_error(resp, method, code, message, contacts, attempt + 1)
            delay = self.http.backoff(attempt)
            log.warning("%s %s -> %s; retry %d/%d in %.2fs", self.source, method, code,
                        attempt + 1, self._max_retries, delay)
            if self.http.limiter is not None and code != "retry_later":
                self.http.limiter.saturate()  # another client shares the account's budget
            self._sleep(delay)
            attempt += 1

    @staticmethod
    def _envelope(body: Any, resp: requests.Response) -> tuple[str | None, str]:
        """UniSender's (code, message) of an error answer (the message HTML-unescaped)."""
        if not isinstance(body, dict):
            return None, f"HTTP {resp.status_code}: the answer is not a JSON object"
        code = body.get("code")
        message = html.unescape(str(body.get("error") or "")) or "error without a message"
        return (str(code) if code not in (None, "") else None), message

    def _api_error(self, resp: requests.Response, method: str, code: str | None,
                   message: str, contacts: Sequence[str], attempts: int) -> ApiError:
        raw = resp.content[:2000].decode("utf-8", errors="replace")
        return ApiError(resp.status_code, self.http.safe_url(resp.url or self._path(method)),
                        mask_identifiers(self.http.redactor(raw), contacts)[:500], self.source,
                        message=mask_identifiers(self.http.redactor(message), contacts),
                        error_code=code, attempts=attempts)

    def _scrubbed(self, exc: ApiError, contacts: Sequence[str]) -> ApiError:
        """The shared layer's error with contacts masked; its ``error_code`` is dropped when
        it is not a code (the shared parser takes UniSender's message for one)."""
        code = exc.error_code if exc.error_code and _CODE.match(exc.error_code) else None
        return ApiError(exc.status, exc.url, mask_identifiers(exc.body_excerpt, contacts),
                        self.source, message=mask_identifiers(exc.detail, contacts) or None,
                        error_code=code, attempts=exc.attempts)

    # -- lists --------------------------------------------------------------------------------
    def lists(self) -> list[dict[str, Any]]:
        """``[{"id": str, "title": str}]`` of the account."""
        answer = self._api("getLists")
        if not isinstance(answer, list):
            raise self._unexpected(self._path("getLists"), "getLists: result is not a list")
        return [{"id": str(item.get("id")), "title": str(item.get("title") or "")}
                for item in answer if isinstance(item, dict) and item.get("id") is not None]

    def _find(self, title: str) -> str | None:
        return next((item["id"] for item in self.lists() if item["title"] == title), None)

    def list_id(self, title: str) -> str:
        """The id of the list titled ``title``, created when there is none."""
        title = title.strip()
        if not title:
            raise ValueError("a UniSender list needs a title")
        found = self._find(title)
        if found is not None:
            return found
        try:
            answer = self._api("createList", [("title", title)], idempotent=False)
        except ApiError as exc:
            # the create may have happened (dropped answer, 5xx) or another run made the list
            if exc.status is None or exc.status >= 500 or exc.error_code == "invalid_arg":
                found = self._find(title)
                if found is not None:
                    log.info("%s: list %s exists after a failed createList", self.source,
                             found)
                    return found
            raise
        if not isinstance(answer, dict) or answer.get("id") in (None, ""):
            raise self._unexpected(self._path("createList"), "createList: no list id")
        log.info("%s: created list %s", self.source, answer["id"])
        return str(answer["id"])

    # -- contacts -----------------------------------------------------------------------------
    def import_contacts(self, list_id: str, kind: str, contacts: Sequence[str]) -> UploadResult:
        """Add ``contacts`` (e-mails or phones) to list ``list_id``, keeping their other lists.

        One ``importContacts`` per 500. Each answer in ``responses`` holds the counts and a
        ``log`` of the rows UniSender refused, as ``{"index", "code"}`` where ``index`` is the
        position in ``contacts`` (the message is dropped: it quotes the contact)."""
        _check_kind(kind)
        list_id = str(list_id)
        result = UploadResult(list_id, "add", len(contacts))
        offset = 0
        for chunk in chunks(contacts, self.max_import):
            fields = [("field_names[0]", kind), ("field_names[1]", f"{kind}_list_ids"),
                      ("overwrite_lists", "0")]
            for i, contact in enumerate(chunk):
                fields += [(f"data[{i}][0]", contact), (f"data[{i}][1]", list_id)]
            answer = self._api("importContacts", fields, contacts=chunk)
            if not isinstance(answer, dict):
                raise self._unexpected(self._path("importContacts"),
                                       "importContacts: result is not an object")
            rejected = [{"index": offset + int(e["index"]), "code": e.get("code")}
                        for e in answer.get("log") or []
                        if isinstance(e, dict) and str(e.get("index", "")).isdigit()]
            result.batches.append(len(chunk))
            result.responses.append({**{k: answer.get(k) for k in RESULT_COUNTS},
                                     "log": rejected})
            if rejected:
                log.warning("%s: list %s: %d of %d %s rows not imported (%s)", self.source,
                            list_id, len(rejected), len(chunk), kind,
                            ", ".join(sorted({str(r["code"]) for r in rejected})))
            offset += len(chunk)
        return result

    def exclude(self, list_id: str, kind: str, contacts: Sequence[str]) -> UploadResult:
        """Take ``contacts`` out of list ``list_id`` only (not unsubscribed, other lists
        kept); one call per contact, a contact UniSender does not know counts as done
        (its answer in ``responses`` is ``{"not_found": True}``)."""
        _check_kind(kind)
        list_id = str(list_id)
        result = UploadResult(list_id, "remove", len(contacts))
        not_found = 0
        for contact in contacts:
            fields = [("contact_type", kind), ("contact", contact), ("list_ids", list_id)]
            try:
                answer = self._api("exclude", fields, contacts=[contact])
            except ApiError as exc:
                if exc.error_code not in (None, "unspecified") or \
                        "not found" not in exc.detail.lower():
                    raise
                answer = {"not_found": True}
                not_found += 1
            result.batches.append(1)
            result.responses.append(answer if isinstance(answer, dict) else {})
        if not_found:
            log.info("%s: list %s: %d of %d contacts to exclude were not in UniSender",
                     self.source, list_id, not_found, len(contacts))
        return result
