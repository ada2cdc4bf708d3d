"""The CIPHER evaluation environment: the cost bookkeeping with scripted models (exact
figures), and one short run with the embedded model end to end (slow)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import tailor_client

from evals.cipher_env import (
    CipherTailor,
    IclEdit,
    NoLearning,
    SimulatedUser,
    load_rounds,
    metrics,
    run,
    run_method,
    table,
)
from evals.client import ServiceModel
from evals.inprocess import in_process_service
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
    with in_process_service(embedder=embedder, backend=world) as client:
        client.fresh_user("bare")
        model = ServiceModel(client, "bare")  # the model through Tailor, no profile
        user = SimulatedUser(model, SETTINGS)
        plan = load_rounds(4, seed=0)
        baseline = run_method(NoLearning(model, SETTINGS), user, plan, progress=False).summary()
        assert baseline["cumulative_curve"] == [4, 8, 12, 16]  # "long draft words here" -> "short"
        assert baseline["zero_edit_rate"] == 0.0
        icl = run_method(IclEdit(model, embedder, SETTINGS, 5), user, plan, progress=False)
        assert icl.summary()["cumulative_curve"] == [4, 4, 4, 4]  # learns from the first edit
        cipher = CipherTailor(client, model, SETTINGS, 5)
        learned = run_method(cipher, user, plan, progress=False).summary()
        # Learned through the service: edits POSTed, inferred by its worker, retrieved
        # and composed by /context.
        preferences = client.api.list_preferences("tailor-eval-cipher")
        assert preferences["total"] >= 1
        cipher.close()
        assert learned["cumulative_curve"] == [4, 4, 4, 4]
        assert learned["zero_edit_rate"] == 0.75
        assert learned["tokens"] == baseline["tokens"] == 4 * 12  # drafts only, 10 + 2 each
        rendered = table({"methods": [baseline, icl.summary(), learned]})
        assert "| CIPHER-5 | 4 |" in rendered
        with pytest.raises(tailor_client.NotFoundError) as gone:
            client.api.get_user("tailor-eval-cipher")
        assert gone.value.code == "user_not_found"


def test_run_cleans_up_and_reports_config() -> None:
    with in_process_service(embedder=HashingEmbedder(), backend=ToyWorld()) as client:
        report = run(client, HashingEmbedder(), rounds=3, seed=1, progress=False)
        users = client.api.list_users()
    assert users["total"] == 0
    assert report["config"]["model"] == "toy" and report["config"]["rounds"] == 3
    assert [m["method"] for m in report["methods"]] == ["no-learning", "ICL-edit-5", "CIPHER-5"]
    names = [m["name"] for m in metrics(report)]
    assert "cipher.CIPHER-5.normalized_edit_distance" in names


@pytest.mark.slow
def test_short_run_with_the_embedded_model() -> None:
    from personalization.embedder import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    with in_process_service(embedder=embedder) as client:  # the configured embedded model
        report = run(client, embedder, rounds=2, seed=0, max_tokens=24, progress=False)
    assert [m["method"] for m in report["methods"]] == ["no-learning", "ICL-edit-5", "CIPHER-5"]
    for method in report["methods"]:
        assert method["rounds"] == 2
        assert len(method["cumulative_curve"]) == 2
        assert method["tokens"] > 0
    assert report["config"]["model"].startswith("HuggingFaceTB/SmolLM2")
