"""Request ids and the access log: an incoming X-Request-Id is echoed when it is safe,
replaced by a generated one when it is not, and returned on every answer (errors and the
last-resort 500 included); TAILOR_LOG_FORMAT=json writes one parseable object per line
with the request id and latency; model loads are logged with their time."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import ADMIN_TOKEN, Api, make_settings, wait_ready
from tests.fakes import ExplodingBackend, HashingEmbedder, RecordingBackend

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(
        make_settings(tmp_path / "data", max_body_bytes=2048),
        embedder=HashingEmbedder(),
        backend=ExplodingBackend(),
    )
    with TestClient(app) as test_client:
        wait_ready(test_client)
        yield test_client


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    h = Api(client).tenant()
    given = client.get("/v1/users", headers={**h, "X-Request-Id": "req-01HZX:trace=1/2+3@a"})
    assert given.status_code == 200
    assert given.headers["X-Request-Id"] == "req-01HZX:trace=1/2+3@a"
    made = client.get("/v1/users", headers=h)
    assert GENERATED.fullmatch(made.headers["X-Request-Id"])
    assert (
        client.get("/v1/users", headers=h).headers["X-Request-Id"] != made.headers["X-Request-Id"]
    )
    for unsafe in ("x" * 129, "has space", 'quote"d', "semi;colon", ""):
        answer = client.get("/v1/users", headers={**h, "X-Request-Id": unsafe})
        assert GENERATED.fullmatch(answer.headers["X-Request-Id"]), unsafe


def test_request_id_on_every_error(client: TestClient) -> None:
    h = Api(client).tenant()
    client.post("/v1/users", json={"id": "alice"}, headers=h)
    sent = {"X-Request-Id": "err-check-1"}
    answers = {
        401: client.get("/v1/users", headers=sent),
        404: client.get("/v1/users/nobody", headers={**h, **sent}),
        405: client.put("/v1/users", headers={**h, **sent}),
        413: client.post("/v1/users", content=b"x" * 4096, headers={**h, **sent}),
        422: client.post("/v1/users", json={"id": ""}, headers={**h, **sent}),
        500: client.post(
            "/v1/chat/completions",
            json={"user": "alice", "messages": [{"role": "user", "content": "x"}]},
            headers={**h, **sent},
        ),
    }
    for status, answer in answers.items():
        assert answer.status_code == status, (status, answer.text)
        assert answer.headers["X-Request-Id"] == "err-check-1", status
    assert answers[500].json()["error"]["code"] == "internal_error"


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def test_json_access_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(
        make_settings(tmp_path / "data", log_format="json"),
        embedder=HashingEmbedder(),
        backend=ExplodingBackend(),
    )
    with TestClient(app) as client:
        wait_ready(client)
        h = Api(client).tenant()
        client.post("/v1/users", json={"id": "alice"}, headers=h)
        client.get("/v1/users/alice", headers={**h, "X-Request-Id": "json-1"})
        client.post(
            "/v1/chat/completions",
            json={"user": "alice", "messages": [{"role": "user", "content": "x"}]},
            headers={**h, "X-Request-Id": "json-500"},
        )
    records = _json_lines(capsys.readouterr().err)  # every line is one JSON object
    access = [r for r in records if r["logger"] == "tailor.access"]
    [line] = [r for r in access if r.get("request_id") == "json-1"]
    assert line["method"] == "GET"
    assert line["route"] == "/v1/users/{user_id}"  # the template, not the user's id
    assert line["status"] == 200
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] > 0
    assert line["level"] == "INFO" and "time" in line
    assert "alice" not in json.dumps(access)
    # a line logged while the request ran carries its id too (the 500's traceback)
    [failure] = [r for r in records if r["logger"] == "tailor.http"]
    assert failure["request_id"] == "json-500"
    assert failure["level"] == "ERROR" and "injected failure" in failure["exc"]
    assert [r["status"] for r in access if r.get("request_id") == "json-500"] == [500]


def test_model_loads_are_logged_and_gate_readiness(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    remote = {
        "model_backend": "openai",
        "model_base_url": "http://127.0.0.1:9/v1",
        "model_name": "served-model",
        "embedder_factory": "tests.fakes:HashingEmbedder",
    }
    app = create_app(make_settings(tmp_path / "eager", **remote))
    with TestClient(app) as client:
        ready = wait_ready(client)
        assert ready["model"] == "loaded"
        scraped = client.get("/metrics").text
        assert re.search(r'^tailor_model_load_seconds\{component="chat"\} \d', scraped, re.M)
        assert re.search(r'^tailor_model_load_seconds\{component="embedder"\} \d', scraped, re.M)
        assert re.search(r"^tailor_chat_model_loaded 1\.0$", scraped, re.M)
    assert "loading embedder from tests.fakes:HashingEmbedder" in caplog.text
    assert re.search(r"embedder test/hashing-v1 loaded in \d+\.\d s", caplog.text)
    assert "loading chat model served-model" in caplog.text
    assert re.search(r"chat model served-model loaded in \d+\.\d s", caplog.text)

    caplog.clear()
    lazy = create_app(make_settings(tmp_path / "lazy", eager_load=False, **remote))
    with TestClient(lazy) as client:
        ready = wait_ready(client)
        assert ready["model"] == "lazy"
        assert re.search(r"^tailor_chat_model_loaded 0\.0$", client.get("/metrics").text, re.M)
    assert "loading chat model" not in caplog.text


def test_admin_token_never_logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(
        make_settings(tmp_path / "data", log_format="json"),
        embedder=HashingEmbedder(),
        backend=RecordingBackend(),
    )
    with TestClient(app) as client:
        wait_ready(client)
        made = client.post(
            "/v1/tenants", json={"name": "acme"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        key = made.json()["api_key"]["key"]
    err = capsys.readouterr().err
    assert ADMIN_TOKEN not in err and key not in err


def test_a_failed_eager_load_keeps_readiness_off_and_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import service.ports
    from personalization.backends.gate import GatedBackend

    caplog.set_level(logging.INFO)
    attempts: list[int] = []

    def flaky() -> RecordingBackend:
        attempts.append(1)
        if len(attempts) == 1:
            raise FileNotFoundError("model file missing (scripted)")
        return RecordingBackend()

    monkeypatch.setattr(
        service.ports,
        "build_backend",
        lambda settings: GatedBackend(flaky, max_waiting=2, model_id="flaky-model"),
    )
    app = create_app(make_settings(tmp_path / "data"), embedder=HashingEmbedder())
    with TestClient(app) as client:
        seen: list[tuple[int, str, str]] = []
        while not seen or seen[-1][0] != 200:
            answer = client.get("/readyz")
            body = answer.json()
            seen.append((answer.status_code, body["index"], body["model"]))
        # the index was ready for a while (the retry's 1 s), the replica still not
        assert (503, "ready", "loading") in seen
        assert seen[-1] == (200, "ready", "loaded")
    assert len(attempts) == 2
    assert "loading the chat model failed (next try in 1 s): FileNotFoundError" in caplog.text
    assert "chat model flaky-model loaded in" in caplog.text
