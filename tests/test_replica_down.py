"""A replica that was down while a user was deleted drops the user from memory and
from its snapshot before it reports ready (two apps in this process, one database)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import Api, make_settings, wait_ready
from tests.fakes import HashingEmbedder, RecordingBackend


def _start(data: Path, url: str | None) -> Api:
    settings = make_settings(data, database_url=url, index_follow_interval_s=60)
    client = TestClient(
        create_app(settings, embedder=HashingEmbedder(), backend=RecordingBackend())
    )
    client.__enter__()
    wait_ready(client)
    return Api(client)


def _snapshot_bytes(data: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((data / "index").iterdir()))


def test_a_user_deleted_while_a_replica_was_down(tmp_path: Path, database_url: str | None) -> None:
    url = database_url or f"sqlite:///{tmp_path / 'shared.db'}"
    one, two = _start(tmp_path / "one", url), _start(tmp_path / "two", url)
    h = one.tenant()
    one.user(h, "gone")
    one.instruction(h, "gone", text="secret rule", applies_when="private topic")
    two.context(h, "gone", "private topic")  # the other replica holds the user now
    ports: Any = two.client.app.state.ports  # type: ignore[attr-defined]
    vectors = [e.vector.tobytes() for e in ports.index.cache.entries()]
    assert len(vectors) == 2
    two.client.__exit__(None, None, None)
    assert all(v in _snapshot_bytes(tmp_path / "two") for v in vectors)

    assert one.client.delete("/v1/users/gone", headers=h).status_code == 204
    two = _start(tmp_path / "two", url)
    ports = two.client.app.state.ports  # type: ignore[attr-defined]
    assert ports.index.cache.count() == 0
    assert not any(v in _snapshot_bytes(tmp_path / "two") for v in vectors)
    for api in (one, two):
        api.client.__exit__(None, None, None)
