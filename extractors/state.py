"""Durable extractor state: the OAuth token pair of an account, and auth failures of a run.

amoCRM refresh tokens rotate on every refresh and are effectively single-use, so the new pair
must hit the disk (atomically) before the new access token is used, and two workers must never
refresh at the same time. ``TokenStore`` gives both: atomic writes (temp file in the same
directory, fsync, ``os.replace``, mode 0600) and an exclusive ``fcntl`` lock.

``AuthFailures`` remembers a definite auth failure (a dead refresh token, a revoked token) of a
source within one run, so the source's other entity steps stop at once with the same message
instead of each trying the dead credentials again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True)
class TokenSet:
    access_token: str | None
    refresh_token: str | None
    expires_at: float | None  # Unix seconds; None = unknown

    def access_valid(self, *, skew_s: float = 60.0, now: float | None = None) -> bool:
        if not self.access_token or self.expires_at is None:
            return False
        return (time.time() if now is None else now) < self.expires_at - skew_s

    def __repr__(self) -> str:  # never print secrets
        return (
            f"TokenSet(access_token={'***' if self.access_token else None}, "
            f"refresh_token={'***' if self.refresh_token else None}, "
            f"expires_at={self.expires_at})"
        )


class TokenStore:
    """A JSON file ``{access_token, refresh_token, expires_at}`` with a lock beside it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._plock = _PathLock.for_path(self.lock_path)

    def __repr__(self) -> str:
        return f"TokenStore({str(self.path)!r})"

    def load(self) -> TokenSet | None:
        """The stored tokens, or None when the file does not exist yet."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            raise ValueError(
                f"token store {self.path} is not a valid JSON object; restore it from a backup "
                "or re-authorise the integration"
            ) from None
        expires = data.get("expires_at")
        return TokenSet(
            access_token=data.get("access_token"),
            refresh_token=data.get("refresh_token"),
            expires_at=float(expires) if expires is not None else None,
        )

    def save(self, tokens: TokenSet) -> None:
        """Write atomically: temp file in the same directory, flush, fsync, ``os.replace``."""
        with self.lock():
            write_json_atomically(self.path, asdict(tokens))

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive, re-entrant lock across threads (RLock) and processes (``fcntl.flock``)."""
        return self._plock.hold()


def write_json_atomically(path: Path, data: object) -> None:
    """Temp file in the same directory (mode 0600), flush, fsync, ``os.replace``, and an fsync
    of the directory: a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@dataclass(frozen=True)
class AuthFailure:
    """The first definite auth failure of a source in a run (its message is already redacted)."""

    source: str
    run_id: str
    step: str
    message: str


class AuthFailures:
    """One file per source in the state directory, ``<source>_auth_failure.json``.

    A file (not process memory) so that every step of a run sees it whichever process runs
    the step. It is keyed by run: the next run tries the credentials again, as the operator may
    have re-authorised in between.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path(self, source: str) -> Path:
        return self.directory / f"{source}_auth_failure.json"

    def record(self, failure: AuthFailure) -> None:
        write_json_atomically(self.path(failure.source), asdict(failure))

    def in_run(self, source: str, run_id: str) -> AuthFailure | None:
        """The failure recorded for ``source`` in ``run_id``; None for none or another run's."""
        try:
            data = json.loads(self.path(source).read_text(encoding="utf-8"))
            failure = AuthFailure(**data)
        except (FileNotFoundError, ValueError, TypeError):  # none, or unreadable: try the API
            return None
        return failure if failure.run_id == run_id else None


class _PathLock:
    """One per lock file per process: an RLock plus a re-entrant ``flock`` on one descriptor
    (two descriptors of one process would deadlock each other under ``flock``)."""

    _registry: ClassVar[dict[str, _PathLock]] = {}
    _guard = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None

    @classmethod
    def for_path(cls, path: Path) -> _PathLock:
        key = str(path.resolve())
        with cls._guard:
            lock = cls._registry.get(key)
            if lock is None:
                lock = cls._registry[key] = cls(path)
            return lock

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self.rlock:
            if self.depth == 0:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self.fd = fd
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
                if self.depth == 0 and self.fd is not None:
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
                    os.close(self.fd)
                    self.fd = None
