"""Authenticated keys remembered for a few seconds, so a turn skips the key's SQL read.

Every request presented its key and read it from SQL (and, once a minute, wrote its
last use). A scope read less than `ttl_s` ago is reused instead. The database stays
the judge: an entry is only ever the database's own answer, at most `ttl_s` old, so a
key revoked (or a tenant's key deleted) on any replica stops working on every replica
within `ttl_s` (TAILOR_KEY_CACHE_TTL_S; 0 reads SQL on every request). This replica
forgets a key the moment it revokes it. An expiry date is checked on every use, and
failures are never remembered (an unknown key always reads SQL).

Entries are keyed by the SHA-256 of the presented key, never the key itself."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from store.keys import KeyRepository
from store.scope import TenantScope


@dataclass(frozen=True, slots=True)
class _Entry:
    scope: TenantScope
    expires_at: datetime | None
    read_at: float  # monotonic


class KeyScopeCache:
    def __init__(
        self,
        ttl_s: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        unexpired: Callable[[datetime | None], bool] = KeyRepository.unexpired,
    ) -> None:
        """`unexpired`: the key repository's own expiry rule (and clock)."""
        self._ttl_s = ttl_s
        self._unexpired = unexpired
        self._max_keys = max_keys
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._ttl_s > 0

    @staticmethod
    def digest(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    def get(self, raw_key: str) -> TenantScope | None:
        """The scope read from SQL less than `ttl_s` ago, if the key has not expired."""
        if not self.enabled:
            return None
        digest = self.digest(raw_key)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if self._clock() - entry.read_at >= self._ttl_s or not self._unexpired(
                entry.expires_at
            ):
                del self._entries[digest]
                return None
            return entry.scope

    def put(
        self, raw_key: str, scope: TenantScope, expires_at: datetime | None, read_at: float
    ) -> None:
        """`read_at`: the clock when the SQL read began, so the bound holds from there."""
        if not self.enabled:
            return
        digest = self.digest(raw_key)
        with self._lock:
            self._entries[digest] = _Entry(scope, expires_at, read_at)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max_keys:
                self._entries.popitem(last=False)

    def now(self) -> float:
        return self._clock()

    def forget(self, key_id: uuid.UUID) -> None:
        """This replica revoked the key: no more reuse here, at once."""
        with self._lock:
            for digest in [d for d, e in self._entries.items() if e.scope.key_id == key_id]:
                del self._entries[digest]
