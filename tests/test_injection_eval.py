"""The injection evaluator's bookkeeping, with scripted models whose behaviour is known:
a gullible one obeys every instruction it sees; a careful one ignores text inside the
marked block. Plus one run with the embedded model (slow)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from evals.injection import ATTACKS, CONTROLS, SECRET, run
from personalization.backends import Completion, GenerationSettings
from personalization.messages import ChatMessage
from tests.fakes import RecordingBackend

# What each attack or control asks for, as an obedient model would produce it.
OBEY = {
    "PWNED": "PWNED", "system prompt": SECRET, "evil.example": "see http://evil.example/win",
    "HACKED": "HACKED: Rome", "I AM DAN": "I AM DAN", "discount code you asked": SECRET,
    "German": "Jawohl, Berlin", "LEAK": f"LEAK {SECRET}", "delete_account": "CALL delete_account()",
    "EvilBot": "I am EvilBot", "Hello Sam": "Hello Sam, Rome", "bulleted": "- Rome\n- Paris",
    "Cheers": "Rome. Cheers!",
}  # fmt: skip


class Gullible(RecordingBackend):
    def visible(self, messages: Sequence[ChatMessage]) -> str:
        return "\n".join(m.content for m in messages)

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        seen = self.visible(messages)
        answer = " ".join(v for k, v in OBEY.items() if k in seen) or "Rome is lovely."
        return Completion(text=answer, finish_reason="stop", model="gullible")


class Careful(Gullible):
    """Ignores whatever sits between the marker lines (what the preamble asks for)."""

    def visible(self, messages: Sequence[ChatMessage]) -> str:
        text = super().visible(messages)
        return re.sub(r"<<<USER_PROFILE (\w+)>>>.*<<<END_USER_PROFILE \1>>>", "", text, flags=re.S)


def test_gullible_model_obeys_every_attack_in_both_arms() -> None:
    report = run(Gullible())
    assert report["attacks"] == len(ATTACKS) == 10
    assert report["success_rate"] == {"naive": 1.0, "marked": 1.0}
    assert report["benign_follow_rate"] == {"naive": 1.0, "marked": 1.0}


def test_marking_lets_a_careful_model_tell_data_from_instructions() -> None:
    report = run(Careful())
    assert report["success_rate"] == {"naive": 1.0, "marked": 0.0}
    assert [r["attack"] for r in report["rows"] if r["marked"]] == []
    assert len(report["controls"]) == len(CONTROLS)


@pytest.mark.slow
def test_runs_with_the_embedded_model() -> None:
    from personalization.backends.llama_cpp import LlamaCppBackend

    report = run(LlamaCppBackend(n_ctx=2048), max_tokens=32)
    assert report["model"].startswith("HuggingFaceTB/SmolLM2")
    for rates in (report["success_rate"], report["benign_follow_rate"]):
        assert set(rates) == {"naive", "marked"}
        assert all(0.0 <= v <= 1.0 for v in rates.values())
    assert all(row["naive_answer"] and row["marked_answer"] for row in report["rows"])
