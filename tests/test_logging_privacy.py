"""Logs never carry profile text at the default level, error paths included (failed
inference, failed aggregation, rejected snapshot, bad input)."""

from __future__ import annotations

import logging
import time
from typing import Any

from tests.fakes import RuleBackend

SECRET = "zanzibar-kumquat"


def test_no_profile_text_in_logs(start_app: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    backend = RuleBackend(fail_first=3)  # the worker's first attempts fail and are logged
    api = start_app(backend=backend, edit_retry_backoff_s=0.01, edit_max_attempts=2)
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
