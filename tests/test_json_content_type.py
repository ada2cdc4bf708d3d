"""A JSON body sent without `Content-Type: application/json` (curl's `-d` alone sends
application/x-www-form-urlencoded) gets a 422 that says so, not a schema error about
"a valid dictionary"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import Api, make_settings, wait_ready
from tests.fakes import HashingEmbedder, RecordingBackend


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(
        make_settings(tmp_path / "data"), embedder=HashingEmbedder(), backend=RecordingBackend()
    )
    with TestClient(app) as test_client:
        wait_ready(test_client)
        yield test_client


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain; charset=utf-8"]
)
def test_json_body_with_another_content_type(client: TestClient, content_type: str) -> None:
    h = Api(client).tenant()
    answer = client.post(
        "/v1/users", content=b'{"id": "user-42"}', headers={**h, "Content-Type": content_type}
    )
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "json_content_type_required"
    assert "Content-Type: application/json" in error["message"]
    assert content_type.split(";")[0] in error["message"]
    assert client.get("/v1/users/user-42", headers=h).status_code == 404  # nothing written


def test_json_content_types_parse_and_none_is_explained(client: TestClient) -> None:
    h = Api(client).tenant()
    made = client.post(
        "/v1/users",
        content=b'{"id": "user-42"}',
        headers={**h, "Content-Type": "application/json; charset=utf-8"},
    )
    assert made.status_code == 201, made.text
    # with no Content-Type at all the body is not read as JSON either: say so
    bare = client.post("/v1/users", content=b'{"id": "user-43"}', headers=h)
    assert bare.status_code == 422
    assert bare.json()["error"]["code"] == "json_content_type_required"
    assert "(this request's Content-Type: none)" in bare.json()["error"]["message"]
    # a real schema error under the right Content-Type keeps its own code and details
    wrong = client.post("/v1/users", json={"id": ""}, headers=h)
    assert wrong.status_code == 422
    assert wrong.json()["error"]["code"] == "invalid_request"
    assert wrong.json()["error"]["details"][0]["loc"] == ["body", "id"]
