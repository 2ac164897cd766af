"""The receiver's settings: explicit values, or ``[edc_callbacks]`` read on first use; the static
callback registrations, cached."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from airflow_edc_callbacks.config import (
    get_body_timeout,
    get_callback_auth,
    get_max_body_bytes,
    get_purge_interval,
    get_retention,
    get_store_url,
)
from airflow_edc_callbacks.receiver.group_commit import WRITERS, GroupCommitter
from airflow_edc_callbacks.static_callbacks import StaticCallbackRegistration, check_name, lookup_registration
from airflow_edc_callbacks.store import EventStore, get_store
from airflow_edc_callbacks.tokens import get_verification_keys


@dataclass
class ReceiverSettings:
    """What the receiver needs; fields left ``None`` are read from ``[edc_callbacks]`` on first use.

    :ivar store_url: the event store URL.
    :ivar signing_key: the key callback tokens are verified with, or a list of keys (the current one and
        older ones during a rotation); default every key of ``[edc_callbacks] callback_signing_key``.
    :ivar auth: ``(header name, expected value)``, or ``None``: then, while ``auth_from_config`` is true,
        it is read from ``callback_auth_secret`` / ``callback_auth_header``, else no header is checked.
    :ivar auth_from_config: whether a ``None`` ``auth`` is read from the configuration.
    :ivar max_body_bytes: the largest accepted body, in bytes.
    :ivar static_lookup: finds a static callback registration by name (default: the registration
        connections, :func:`~airflow_edc_callbacks.static_callbacks.lookup_registration`).
    :ivar static_cache_seconds: how long a found registration is reused (a rotated secret's old value is
        accepted that long at most).
    :ivar static_refresh_seconds: a found registration whose secret does not match a request's is looked up
        afresh (the secret may just have been rotated) at most once per this many seconds; a request that
        comes sooner waits for the next lookup (at most this long) and is answered by it. So wrong secrets
        sent at any rate cost one lookup per name and interval, and a rotated secret is never refused.
    :ivar static_negative_cache_seconds: how long a name no registration was found for is answered 404
        without another lookup (a newly registered name is accepted that long after its registration at
        most). 0: every request looks the name up.
    :ivar static_negative_cache_size: at most this many such names are remembered (the oldest are
        forgotten first), so requests to random names cannot grow the cache without bound.
    :ivar retention: how long events are kept (``[edc_callbacks] retention``, 7 days).
    :ivar purge_interval: seconds between two background purges (``[edc_callbacks] purge_interval``,
        1 hour; 0 disables them). The first runs when the app starts (its lifespan).
    :ivar body_timeout: seconds a callback's body may take to arrive once its headers are in
        (``[edc_callbacks] body_timeout``, 10); a slower one is answered 408. 0: no limit.
    """

    store_url: str | None = None
    signing_key: bytes | list[bytes] | None = None
    auth: tuple[str, str] | None = None
    auth_from_config: bool = True
    max_body_bytes: int | None = None
    static_lookup: Callable[[str], StaticCallbackRegistration | None] | None = None
    static_cache_seconds: float = 10.0
    static_refresh_seconds: float = 1.0
    static_negative_cache_seconds: float = 5.0
    static_negative_cache_size: int = 10_000
    retention: timedelta | None = None
    purge_interval: float | None = None
    body_timeout: float | None = None
    _store: EventStore | None = None
    _static_cache: dict[str, tuple[float, StaticCallbackRegistration]] = field(default_factory=dict)
    _static_missing: dict[str, float] = field(default_factory=dict)
    _static_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _lookup_locks: tuple[threading.Lock, ...] = field(
        default_factory=lambda: tuple(threading.Lock() for _ in range(64)), repr=False
    )
    _refresh_locks: dict[str, asyncio.Lock] = field(default_factory=dict, repr=False)
    _last_refresh: dict[str, float] = field(default_factory=dict, repr=False)
    _refresh_loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _committers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupCommitter] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )

    def resolve(self) -> ReceiverSettings:
        """Fill every field left ``None`` from ``[edc_callbacks]``; returns ``self``.

        :raises ValueError: a configured value is malformed (a duration, the body timeout).
        :raises EdcCallbacksError: the signing key file exists but stays empty.
        """
        self.resolve_retention()
        if self.signing_key is None:
            self.signing_key = get_verification_keys()
        if self.auth is None and self.auth_from_config:
            self.auth = get_callback_auth()
            self.auth_from_config = False
        if self.max_body_bytes is None:
            self.max_body_bytes = get_max_body_bytes()
        if self.body_timeout is None:
            self.body_timeout = get_body_timeout()
        return self

    def resolve_retention(self) -> ReceiverSettings:
        """Fill ``store_url``, ``retention`` and ``purge_interval`` from ``[edc_callbacks]`` where ``None``
        (what the retention loop needs; no key is read); returns ``self``.

        :raises ValueError: ``retention`` or ``purge_interval`` is configured as no duration.
        """
        if self.store_url is None:
            self.store_url = get_store_url()
        if self.retention is None:
            self.retention = get_retention()
        if self.purge_interval is None:
            self.purge_interval = get_purge_interval().total_seconds()
        return self

    def static_registration(self, name: str, *, fresh: bool = False) -> StaticCallbackRegistration | None:
        """The static callback registered as ``name``, or ``None``.

        Found registrations are reused for ``static_cache_seconds``, names found unregistered for
        ``static_negative_cache_seconds``; concurrent requests for a name the caches do not answer wait
        for one lookup. ``fresh`` skips both caches (see :meth:`refreshed_registration` for the
        rate-limited way the route asks afresh). Blocking (a connection lookup): call it from a
        thread; thread-safe.

        :raises ValueError: the registration's connection is malformed.
        :raises Exception: whatever the lookup raises (secrets backend or metastore faults).
        """
        try:
            check_name(name)
        except ValueError:
            return None
        if fresh:
            return self._look_up(name)
        hit, registration = self.cached_static_registration(name)
        if hit:
            return registration
        with self._lookup_locks[hash(name) % len(self._lookup_locks)]:  # one lookup of a name at a time
            hit, registration = self.cached_static_registration(name)  # found by the lookup this request waited for?
            return registration if hit else self._look_up(name)

    def cached_static_registration(self, name: str) -> tuple[bool, StaticCallbackRegistration | None]:
        """``(True, registration or None)`` when :meth:`static_registration` would answer ``name`` from its
        caches, else ``(False, None)``: no lookup, so the event loop may call it (the route then looks up in
        a worker thread only on a miss)."""
        now = time.monotonic()
        with self._static_lock:
            cached = self._static_cache.get(name)
            if cached is not None and now - cached[0] < self.static_cache_seconds:
                return True, cached[1]
            missing_since = self._static_missing.get(name)
            if missing_since is not None and now - missing_since < self.static_negative_cache_seconds:
                return True, None
        return False, None

    def _look_up(self, name: str) -> StaticCallbackRegistration | None:
        """Look ``name`` up (blocking) and cache what was found, or that nothing was."""
        now = time.monotonic()  # when this lookup started: what it finds is as new as that
        registration = (self.static_lookup or lookup_registration)(name)
        with self._static_lock:
            if registration is None:
                self._static_cache.pop(name, None)
                self._remember_missing(name, time.monotonic())
            else:
                self._static_missing.pop(name, None)
                self._static_cache[name] = (now, registration)
        return registration

    async def refreshed_registration(self, name: str, asked: float) -> StaticCallbackRegistration | None:
        """The static callback ``name`` as found by a lookup that started at or after ``asked`` (a
        :func:`time.monotonic` value: when the request found the cached registration's secret wrong).

        One lookup per name at a time; a lookup starts at least ``static_refresh_seconds`` after the
        previous one (the wait is asynchronous: no thread is held), and every request that asked before it
        started is answered by it.

        :raises Exception: what :meth:`static_registration` raises.
        """
        if self._refresh_loop is not asyncio.get_running_loop():  # an asyncio lock serves one loop
            self._refresh_loop, self._refresh_locks = asyncio.get_running_loop(), {}
        lock = self._refresh_locks.setdefault(name, asyncio.Lock())
        async with lock:
            with self._static_lock:
                cached = self._static_cache.get(name)
            if cached is not None and cached[0] >= asked:  # looked up since this request asked
                return cached[1]
            wait = self._last_refresh.get(name, -float("inf")) + self.static_refresh_seconds - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_refresh[name] = time.monotonic()
            return await asyncio.to_thread(self.static_registration, name, fresh=True)

    def _remember_missing(self, name: str, now: float) -> None:
        """Add ``name`` to the negative cache, dropping expired and, beyond its size, the oldest names."""
        missing = self._static_missing
        missing.pop(name, None)  # re-inserted last: the dictionary stays ordered by time
        while missing:
            oldest, since = next(iter(missing.items()))
            if now - since < self.static_negative_cache_seconds and len(missing) < self.static_negative_cache_size:
                break
            del missing[oldest]
        if self.static_negative_cache_seconds > 0 and self.static_negative_cache_size > 0:
            missing[name] = now

    @property
    def store(self) -> EventStore:
        """The event store, opened on first use (blocking: call it from a thread).

        :raises StoreUnavailableError: it cannot be opened; the next use tries again.
        """
        if self._store is None:
            self._store = get_store(self.store_url)
        return self._store

    def group_committer(self) -> GroupCommitter:
        """The :class:`~airflow_edc_callbacks.receiver.group_commit.GroupCommitter` of the running event loop
        (one per loop: its callbacks' events are committed together), created on first use."""
        loop = asyncio.get_running_loop()
        committer = self._committers.get(loop)
        if committer is None:
            committer = self._committers[loop] = GroupCommitter(lambda: self.store, WRITERS)
        return committer
