"""The CIPHER evaluation environment: the cost bookkeeping with scripted models (exact
figures), and one short run with the embedded model end to end (slow)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from evals.cipher_env import (
    CipherTailor,
    IclEdit,
    NoLearning,
    SimulatedUser,
    load_rounds,
    run,
    run_method,
    table,
)
from personalization.backends import Completion, GenerationSettings
from personalization.messages import ChatMessage
from tests.fakes import HashingEmbedder, RecordingBackend

SETTINGS = GenerationSettings(max_tokens=50)


class ToyWorld(RecordingBackend):
    """Drafts are 'long draft words here' unless the prompt carries a profile or
    examples mentioning 'short'; the user wants 'short'. Inference says 'short'."""

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        prompt = "\n".join(m.content for m in messages)
        last = messages[-1].content
        if last.startswith("Text:\n"):  # the user's yes/no
            text = "yes" if last.split("\n")[1] == "short" else "no"
        elif any(cue in last for cue in ("Rewrite this as", "Rewritten text:", "have in common")):
            text = "short"
        else:
            text = "short" if "short" in prompt.split(last)[0] else "long draft words here"
        return Completion(
            text=text, finish_reason="stop", model="toy", prompt_tokens=10, completion_tokens=2
        )


def test_rounds_are_reproducible_and_cover_sources() -> None:
    first, again = load_rounds(9, seed=3), load_rounds(9, seed=3)
    assert first == again
    assert {r.source for r in first} == {"news", "email", "review"}
    assert load_rounds(9, seed=4) != first


def test_costs_per_method_in_a_toy_world() -> None:
    world, embedder = ToyWorld(), HashingEmbedder()
    user = SimulatedUser(world, SETTINGS)
    plan = load_rounds(4, seed=0)
    baseline = run_method(NoLearning(world, SETTINGS), user, plan, progress=False).summary()
    assert baseline["cumulative_curve"] == [4, 8, 12, 16]  # "long draft words here" -> "short"
    assert baseline["zero_edit_rate"] == 0.0
    icl = run_method(IclEdit(world, embedder, SETTINGS, 5), user, plan, progress=False).summary()
    assert icl["cumulative_curve"] == [4, 4, 4, 4]  # learns from the first edit
    cipher = CipherTailor(world, embedder, SETTINGS, 5)
    learned = run_method(cipher, user, plan, progress=False).summary()
    cipher.close()
    assert learned["cumulative_curve"] == [4, 4, 4, 4]
    assert learned["zero_edit_rate"] == 0.75
    assert learned["tokens"] > baseline["tokens"]  # inference calls are counted
    rendered = table({"methods": [baseline, icl, learned]})
    assert "| CIPHER-5 | 4 |" in rendered


@pytest.mark.slow
def test_short_run_with_the_embedded_model() -> None:
    from personalization.backends.llama_cpp import LlamaCppBackend
    from personalization.embedder import SentenceTransformerEmbedder

    report = run(
        LlamaCppBackend(n_ctx=2048),
        SentenceTransformerEmbedder(),
        rounds=2,
        seed=0,
        max_tokens=24,
        progress=False,
    )
    assert [m["method"] for m in report["methods"]] == ["no-learning", "ICL-edit-5", "CIPHER-5"]
    for method in report["methods"]:
        assert method["rounds"] == 2
        assert len(method["cumulative_curve"]) == 2
        assert method["tokens"] > 0
    assert report["config"]["model"].startswith("HuggingFaceTB/SmolLM2")
