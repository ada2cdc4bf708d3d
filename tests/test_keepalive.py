"""After a 500 the keep-alive connection stays usable: the error is answered, logged,
and not re-raised to the server (which would drop the connection under the next
request). One httpx.Client over a real socket to a real uvicorn server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from tests.conftest import make_settings
from tests.fakes import ExplodingBackend, HashingEmbedder
from tests.server_process import InThreadServer


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    app = create_app(
        make_settings(tmp_path / "data", rate_limit_per_minute=0),
        embedder=HashingEmbedder(),
        backend=ExplodingBackend(),
    )
    server = InThreadServer(app)
    yield server.start(timeout=30)
    server.stop()


def _local_port(response: httpx.Response) -> int:
    """The client-side port of the connection that carried the response (read while it
    is open)."""
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


@pytest.mark.parametrize("stream", [False, True])
def test_the_connection_survives_a_500(base_url: str, stream: bool) -> None:
    from tests.conftest import ADMIN_TOKEN

    ports: list[int] = []
    hooks = {"response": [lambda response: ports.append(_local_port(response))]}
    with httpx.Client(base_url=base_url, timeout=30, event_hooks=hooks) as client:
        made = client.post(
            "/v1/tenants", json={"name": "acme"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        h = {"Authorization": f"Bearer {made.json()['api_key']['key']}"}
        assert client.post("/v1/users", json={"id": "alice"}, headers=h).status_code == 201
        failed = client.post(
            "/v1/chat/completions",
            json={
                "user": "alice",
                "stream": stream,
                "messages": [{"role": "user", "content": "x"}],
            },
            headers=h,
        )
        assert failed.status_code == 500
        assert failed.json() == {
            "error": {
                "code": "internal_error",
                "message": "the server failed to handle this request",
            }
        }
        assert "injected failure" not in failed.text
        time.sleep(0.2)  # let a closing server's FIN arrive before the next request
        after = client.get("/v1/users/alice", headers=h)
        assert after.status_code == 200
        assert after.json()["id"] == "alice"
        # one and the same connection carried every request
        assert len(ports) == 4
        assert len(set(ports)) == 1, ports
