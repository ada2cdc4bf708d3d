"""Logs never carry profile text at the default level, error paths included (failed
inference, failed aggregation, rejected snapshot, bad input), in either log format: what
the handler writes is checked too, and in JSON every line must parse."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from tests.fakes import RuleBackend

SECRET = "zanzibar-kumquat"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_profile_text_in_logs(
    start_app: Any, caplog: Any, capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    caplog.set_level(logging.INFO)
    backend = RuleBackend(fail_first=3)  # the worker's first attempts fail and are logged
    api = start_app(
        backend=backend, edit_retry_backoff_s=0.01, edit_max_attempts=2, log_format=log_format
    )
    h = api.tenant()
    api.user(h, "alice")
    api.instruction(h, "alice", text=f"I like {SECRET}", always_on=True)
    api.client.post(
        "/v1/users/alice/examples",
        json={"prompt": f"{SECRET} prompt", "chosen": SECRET, "rejected": "no"},
        headers=h,
    )
    edit = api.client.post(
        "/v1/users/alice/edits",
        json={
            "context": f"{SECRET} context",
            "draft": f"long {SECRET} draft text here",
            "edited": SECRET,
        },
        headers=h,
    ).json()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = api.client.get(f"/v1/users/alice/edits/{edit['id']}", headers=h).json()[
            "inference_status"
        ]
        if status in {"failed", "done"}:
            break
        time.sleep(0.05)
    assert status == "failed"
    api.client.post(
        "/v1/users/alice/instructions", json={"text": f"{SECRET}\u202e"}, headers=h
    )  # rejected input
    api.client.post(
        "/v1/chat/completions",
        json={
            "user": "alice",
            "messages": [{"role": "user", "content": f"tell me about {SECRET}"}],
        },
        headers=h,
    )
    assert "giving up on edit" in caplog.text  # the error path did log
    assert SECRET not in caplog.text
    written = capsys.readouterr().err
    assert "giving up on edit" in written
    assert "/v1/users/{user_id}/edits" in written  # the access lines are there
    assert SECRET not in written
    if log_format == "json":
        records = [json.loads(line) for line in written.splitlines() if line.strip()]
        assert any(r["logger"] == "tailor.access" and r["status"] == 422 for r in records)
