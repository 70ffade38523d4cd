"""Locks that keep two writers of the same series apart, across processes and machines.

PostgreSQL: a session-level advisory lock (``pg_advisory_lock``) on a dedicated connection, so
every process on every machine that shares the database is excluded. SQLite: an exclusive
``flock`` on a file beside the database (SQLite files are local to one machine, so the lock
need only cover the processes of that machine).
"""

from __future__ import annotations

import fcntl
import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from db.session import get_engine


class LockBusy(RuntimeError):
    """The lock is held elsewhere and the caller asked not to wait."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (PostgreSQL advisory locks take a bigint)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def named_lock(
    url: str, name: str, *, wait: bool = True, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold the lock ``name`` in the database at ``url`` for the ``with`` block.

    When it is held elsewhere: ``wait=False`` raises :class:`LockBusy`; otherwise
    ``on_wait()`` is called once (to say so) and the call blocks until the holder releases it.
    The lock is released on exit, also on errors, and by the server or the kernel if the
    holding process dies.
    """
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        with _advisory_lock(url, name, wait, on_wait):
            yield
    elif backend == "sqlite":
        with _file_lock(url, name, wait, on_wait):
            yield
    else:
        raise NotImplementedError(f"locks are implemented for SQLite and PostgreSQL, not {backend}")


@contextmanager
def _advisory_lock(
    url: str, name: str, wait: bool, on_wait: Callable[[], None] | None
) -> Iterator[None]:
    key = {"key": lock_key(name)}
    engine = get_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if not connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), key):
            if not wait:
                raise LockBusy(f"{name} is locked by another process")
            if on_wait is not None:
                on_wait()
            connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)


@contextmanager
def _file_lock(
    url: str, name: str, wait: bool, on_wait: Callable[[], None] | None
) -> Iterator[None]:
    database = make_url(url).database
    if not database or database == ":memory:":
        yield  # one connection, one process: nothing to exclude
        return
    folder = Path(f"{database}.locks")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".lock")
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise LockBusy(f"{name} is locked by another process") from None
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
