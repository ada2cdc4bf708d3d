"""GET /metrics scraped after real requests: the counters and histograms move for the
right route template and status, the embedder's batches and the model's calls are
observed, the edit queue is read from the database, and the endpoint's protection."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from personalization.backends import BackendUnavailable, Completion, GenerationSettings
from personalization.messages import ChatMessage
from service.app import create_app
from tests.conftest import make_settings, wait_ready
from tests.fakes import HashingEmbedder, RecordingBackend

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class HeldBackend(RecordingBackend):
    """Edit inference waits until the test lets it go (so the edit stays queued);
    a chat whose message says "explode" fails like an unreachable model."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        prompt = messages[-1].content
        if "Rewritten text:" in prompt:
            self.release.wait(30)
            return Completion(text="Prefers shorter text.", finish_reason="stop", model="t")
        if "explode" in prompt:
            raise BackendUnavailable("model down (scripted)")
        return super().complete(messages, settings)


def test_metrics_follow_real_requests(start_app: Any) -> None:
    backend = HeldBackend()
    api = start_app(backend=backend)
    h = api.tenant()
    api.user(h, "alice")
    api.instruction(h, "alice", text="I avoid gluten", always_on=True)
    api.instruction(h, "alice", text="Use bullet points", applies_when="when I ask for a plan")
    before = scrape(api.client)

    for _ in range(3):
        assert api.client.get("/v1/users/alice", headers=h).status_code == 200
    assert api.client.get("/v1/users/nobody", headers=h).status_code == 404
    assert api.client.get("/no/such/path/alice", headers=h).status_code == 404
    assert api.client.request("BREW", "/v1/users", headers=h).status_code == 405
    turn = api.context(h, "alice", "Plan a day in Rome")
    used = len(turn["instructions"])
    assert used == 2
    chat = api.client.post(
        "/v1/chat/completions",
        json={"user": "alice", "messages": [{"role": "user", "content": "hello"}]},
        headers=h,
    )
    assert chat.status_code == 200, chat.text
    failed = api.client.post(
        "/v1/chat/completions",
        json={"user": "alice", "messages": [{"role": "user", "content": "explode"}]},
        headers=h,
    )
    assert failed.status_code == 503
    edit = api.client.post(
        "/v1/users/alice/edits",
        json={"context": "Tell the team", "draft": "Dear team, a long text", "edited": "Moved."},
        headers=h,
    )
    assert edit.status_code == 202, edit.text
    after = scrape(api.client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/users/{user_id}"
    assert moved("tailor_http_requests_total", method="GET", route=route, status="200") == 3
    assert moved("tailor_http_requests_total", method="GET", route=route, status="404") == 1
    assert moved("tailor_http_request_duration_seconds_count", method="GET", route=route) == 4
    assert moved("tailor_http_request_duration_seconds_sum", method="GET", route=route) > 0
    chat_route = {"method": "POST", "route": "/v1/chat/completions"}
    assert moved("tailor_http_requests_total", **chat_route, status="200") == 1
    assert moved("tailor_http_requests_total", **chat_route, status="503") == 1
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert moved("tailor_http_requests_total", **unmatched) == 1
    made_up = {"method": "OTHER", "route": "/v1/users", "status": "405"}
    assert moved("tailor_http_requests_total", **made_up) == 1
    # no raw path (a user id) ever becomes a label value
    assert not any("alice" in v or "nobody" in v for (_, labels) in after for _, v in labels)

    # the context turn and the chat turn each embedded at least one text
    assert moved("tailor_embed_batch_size_count") >= 2
    assert moved("tailor_embed_batch_size_sum") >= moved("tailor_embed_batch_size_count")
    assert moved("tailor_embed_batch_duration_seconds_count") == moved(
        "tailor_embed_batch_size_count"
    )

    assert moved("tailor_turn_profile_items_count", endpoint="context") == 1
    assert moved("tailor_turn_profile_items_sum", endpoint="context") == used
    assert moved("tailor_turn_profile_tokens_sum", endpoint="context") == turn["token_estimate"]
    assert moved("tailor_turn_profile_items_count", endpoint="chat") == 1

    assert moved("tailor_model_request_duration_seconds_count", operation="complete") >= 2
    assert moved("tailor_model_errors_total", operation="complete", code="backend_unavailable") == 1

    # the edit is queued (pending, or running while the model is held) in the database
    queued = value(after, "tailor_edit_queue_depth", status="pending") + value(
        after, "tailor_edit_queue_depth", status="running"
    )
    assert queued == 1
    assert value(after, "tailor_database_up") == 1
    time.sleep(0.05)
    assert value(scrape(api.client), "tailor_edit_queue_oldest_age_seconds") > 0

    assert value(after, "tailor_index_state", state="ready") == 1
    assert value(after, "tailor_index_state", state="rebuilding") == 0
    assert value(after, "tailor_index_vectors", collection="instruction") >= 2

    backend.release.set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status = api.client.get(f"/v1/users/alice/edits/{edit.json()['id']}", headers=h)
        if status.json()["inference_status"] == "done":
            break
        time.sleep(0.05)
    drained = scrape(api.client)
    assert value(drained, "tailor_edit_queue_depth", status="pending") == 0
    assert value(drained, "tailor_edit_queue_depth", status="running") == 0
    assert value(drained, "tailor_edit_queue_oldest_age_seconds") == 0
    assert value(drained, "tailor_index_vectors", collection="edit") == 1


def _client(tmp_path: Path, **overrides: Any) -> TestClient:
    app = create_app(
        make_settings(tmp_path / "data", **overrides),
        embedder=HashingEmbedder(),
        backend=RecordingBackend(),
    )
    return TestClient(app)


def test_metrics_token_and_switch(tmp_path: Path) -> None:
    with _client(tmp_path, metrics_token="scrape-secret-0123456789") as client:
        wait_ready(client)
        refused = client.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_metrics_token"
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        samples = scrape(client, Authorization="Bearer scrape-secret-0123456789")
        assert value(samples, "tailor_index_state", state="ready") == 1
        assert client.get("/healthz").status_code == 200  # only /metrics is guarded
    with _client(tmp_path, metrics_enabled=False) as client:
        wait_ready(client)
        assert client.get("/metrics").status_code == 404
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]
