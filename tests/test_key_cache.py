"""The key cache (service/key_cache.py): a key revoked on one replica stops working on
another replica of the same database within TAILOR_KEY_CACHE_TTL_S, and at once on the
replica that revoked it; an expired key stops at its expiry even while remembered.
Two app instances share one database (SQLite file or PostgreSQL)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from service.key_cache import KeyScopeCache
from store.clock import utcnow
from store.scope import TenantScope
from tests.conftest import Api

TTL_S = 0.5


def _two_replicas(
    start_app: Callable[..., Api], tmp_path: Path, database_url: str | None, **settings: Any
) -> tuple[Api, Api]:
    url = database_url or f"sqlite:///{(tmp_path / 'shared.db').resolve()}"
    first = start_app(data_dir=tmp_path / "a", database_url=url, **settings)
    second = start_app(data_dir=tmp_path / "b", database_url=url, **settings)
    return first, second


def _status(api: Api, key: str, user: str = "alice") -> int:
    response = api.client.post(
        f"/v1/users/{user}/context",
        json={"messages": [{"role": "user", "content": "plan a trip"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    return response.status_code


def _key(api: Api, admin: dict[str, str], **body: Any) -> tuple[str, str]:
    response = api.client.post("/v1/keys", json=body, headers=admin)
    assert response.status_code == 201, response.text
    created = response.json()
    return created["key"], created["id"]


def test_a_key_revoked_on_one_replica_is_refused_on_the_other_within_the_ttl(
    start_app: Callable[..., Api], tmp_path: Path, database_url: str | None
) -> None:
    a, b = _two_replicas(start_app, tmp_path, database_url, key_cache_ttl_s=TTL_S)
    admin = a.tenant()
    a.user(admin, "alice")
    key, key_id = _key(a, admin, name="app")
    assert _status(a, key) == 200
    assert _status(b, key) == 200  # b now holds the key's scope
    revoked = a.client.delete(f"/v1/keys/{key_id}", headers=admin)
    assert revoked.status_code == 204
    assert _status(a, key) == 401  # the revoking replica forgot it at once
    time.sleep(TTL_S * 1.2)
    assert _status(b, key) == 401  # the other one read SQL again after the bound
    # The refusal is not remembered either way: the tenant's other key still works.
    assert _status(b, admin["Authorization"].removeprefix("Bearer ")) == 200


def test_a_key_revoked_on_the_replica_that_cached_it_is_refused_at_once(
    start_app: Callable[..., Api], tmp_path: Path, database_url: str | None
) -> None:
    a, b = _two_replicas(start_app, tmp_path, database_url, key_cache_ttl_s=60)
    admin = a.tenant()
    a.user(admin, "alice")
    key, key_id = _key(a, admin, name="app")
    assert _status(b, key) == 200
    assert b.client.delete(f"/v1/keys/{key_id}", headers=admin).status_code == 204
    assert _status(b, key) == 401


def test_a_remembered_key_stops_at_its_expiry(
    start_app: Callable[..., Api], tmp_path: Path, database_url: str | None
) -> None:
    a, _ = _two_replicas(start_app, tmp_path, database_url, key_cache_ttl_s=60)
    admin = a.tenant()
    a.user(admin, "alice")
    expires = utcnow() + timedelta(seconds=1.5)
    key, _ = _key(a, admin, name="short", expires_at=expires.isoformat())
    assert _status(a, key) == 200
    while utcnow() < expires + timedelta(milliseconds=100):
        time.sleep(0.1)
    assert _status(a, key) == 401


def test_a_user_bound_key_from_the_cache_still_reaches_only_its_user(
    start_app: Callable[..., Api], tmp_path: Path, database_url: str | None
) -> None:
    a, _ = _two_replicas(start_app, tmp_path, database_url, key_cache_ttl_s=60)
    admin = a.tenant()
    a.user(admin, "alice")
    a.user(admin, "bob")
    key, _ = _key(a, admin, name="alice-page", user_id="alice")
    assert _status(a, key, "alice") == 200
    assert _status(a, key, "alice") == 200  # from the cache
    assert _status(a, key, "bob") == 404


def test_cache_entries_last_the_ttl_and_forget_drops_a_key() -> None:
    now = [100.0]
    cache = KeyScopeCache(2.0, clock=lambda: now[0])
    scope = TenantScope(tenant_id=uuid.uuid4(), key_id=uuid.uuid4())
    other = TenantScope(tenant_id=scope.tenant_id, key_id=uuid.uuid4())
    cache.put("tlr_one", scope, None, read_at=100.0)
    cache.put("tlr_two", other, None, read_at=100.0)
    now[0] = 101.9
    assert cache.get("tlr_one") == scope
    assert cache.get("tlr_unknown") is None
    cache.forget(scope.key_id)  # type: ignore[arg-type]
    assert cache.get("tlr_one") is None
    assert cache.get("tlr_two") == other
    now[0] = 102.0  # the bound counts from when the SQL read began
    assert cache.get("tlr_two") is None
    off = KeyScopeCache(0)
    off.put("tlr_one", scope, None, read_at=0.0)
    assert off.get("tlr_one") is None
