"""CIPHER with the real models: all-MiniLM-L6-v2 for contexts, the embedded SmolLM2 for
inference and aggregation. A 135M model's phrases are weak, so this checks that a
phrase appears, is short and is not an echo of the prompt, and that it conditions the
next turn."""

from __future__ import annotations

import time
from typing import Any

import pytest

from personalization.embedder import SentenceTransformerEmbedder

pytestmark = pytest.mark.slow

DRAFT = (
    "Dear team, I hope this message finds you well. I wanted to take a moment to let you "
    "know that our weekly planning meeting, which usually takes place on Tuesday morning, "
    "has been moved to Thursday afternoon at 3pm because several people are travelling."
)
EDITED = "Planning meeting moved to Thu 3pm (people travelling)."


def test_edit_to_inferred_preference_with_the_embedded_model(start_app: Any) -> None:
    api = start_app(embedder=SentenceTransformerEmbedder(), backend="default")
    h = api.tenant()
    api.user(h, "sam")
    for context in ["tell the team the meeting moved", "announce the new meeting time to the team"]:
        created = api.client.post(
            "/v1/users/sam/edits",
            json={"context": context, "draft": DRAFT, "edited": EDITED},
            headers=h,
        ).json()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            edit = api.client.get(f"/v1/users/sam/edits/{created['id']}", headers=h).json()
            if edit["inference_status"] in {"done", "failed"}:
                break
            time.sleep(0.2)
        assert edit["inference_status"] == "done", edit
    prefs = api.client.get("/v1/users/sam/preferences", headers=h).json()["items"]
    assert len(prefs) == 2
    for pref in prefs:
        words = pref["text"].split()
        assert 1 <= len(words) <= 20, pref["text"]
        assert "Draft:" not in pref["text"]
        assert pref["status"] == "suggested"
    ctx = api.context(h, "sam", "let the team know the meeting is rescheduled")
    assert ctx["inferred_preference"] is not None
    assert len(ctx["inferred_preference"]["edit_ids"]) == 2
    assert '"type": "inferred_preference"' in ctx["system_message"]["content"]
    print("inferred:", [p["text"] for p in prefs], "aggregated:", ctx["inferred_preference"])
