"""The learned half of write-time applicability (personalization/learned_applicability.py):
reading the shipped weights, refusing another embedder's, and how derivation combines it
with the lexical cues. Unit tests use small hand-made weights over the hashing embedder;
the slow tests run the shipped weights with the real MiniLM on sentences written for
this test (not from the evaluation data), so they do not depend on any cross-validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from personalization.applicability import ApplicabilityModel, classify
from personalization.domains import DOMAINS
from personalization.embedder import SentenceTransformerEmbedder
from personalization.learned_applicability import (
    FORMAT,
    PATH,
    LearnedApplicability,
)
from store.models import InstructionKind
from tests.fakes import HashingEmbedder

DIM = 64


def _write(
    path: Path,
    *,
    embedder: str = "test/hashing-v1",
    domains: tuple[str, ...] = DOMAINS,
    kind_bias: float = 0.0,
    food_bias: float = 0.0,
) -> Path:
    bias = np.zeros(len(domains), dtype=np.float32)
    if "food" in domains:
        bias[domains.index("food")] = food_bias
    np.savez(
        path,
        format=np.array(FORMAT),
        embedder=np.array(embedder),
        domains=np.array(domains),
        domain_weights=np.zeros((len(domains), DIM), dtype=np.float32),
        domain_bias=bias,
        kind_weights=np.zeros(DIM, dtype=np.float32),
        kind_bias=np.float32(kind_bias),
    )
    return path


def test_weights_for_another_embedder_are_not_used(tmp_path: Path) -> None:
    path = _write(tmp_path / "w.npz", embedder="someone/else")
    assert LearnedApplicability.load("test/hashing-v1", DIM, path) is None
    assert LearnedApplicability.load("test/hashing-v1", DIM, tmp_path / "missing.npz") is None
    assert LearnedApplicability.load("test/hashing-v1", DIM * 2, _write(tmp_path / "d.npz")) is None
    # the shipped file is MiniLM's: the hashing embedder derives by cues alone
    assert ApplicabilityModel(HashingEmbedder())._learned is None


def test_weights_for_other_domains_fail_loudly(tmp_path: Path) -> None:
    path = _write(tmp_path / "w.npz", domains=DOMAINS[:-1])
    with pytest.raises(ValueError, match="other domains"):
        LearnedApplicability.load("test/hashing-v1", DIM, path)


def test_a_constraint_the_cues_miss_is_learned_with_its_domains(tmp_path: Path) -> None:
    embedder = HashingEmbedder(dim=DIM)
    text = "Mussels leave me in hospital."  # no cue: the lexical classifier says style
    assert classify(text) == InstructionKind.style
    vector = embedder.embed([text])[0]
    sure = LearnedApplicability.load(
        embedder.model_id, DIM, _write(tmp_path / "c.npz", kind_bias=3.0, food_bias=5.0)
    )
    assert sure is not None
    assert sure.constraint_probability(vector) == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert sure.constraint_domains(vector) == ["food"]  # the rest are each under 0.2
    derived = ApplicabilityModel(embedder, sure).derive(text, vector)
    assert derived.kind == InstructionKind.constraint
    assert "food" in derived.domains
    # an unsure regression changes nothing: style, and its domains are the nearest ones
    unsure = LearnedApplicability.load(
        embedder.model_id, DIM, _write(tmp_path / "s.npz", kind_bias=-3.0, food_bias=5.0)
    )
    plain = ApplicabilityModel(embedder).derive(text, vector)
    assert ApplicabilityModel(embedder, unsure).derive(text, vector) == plain
    assert plain.kind == InstructionKind.style


def test_a_cue_is_not_overruled_by_the_regression(tmp_path: Path) -> None:
    embedder = HashingEmbedder(dim=DIM)
    text = "I'm celiac."
    never = LearnedApplicability.load(
        embedder.model_id, DIM, _write(tmp_path / "n.npz", kind_bias=-9.0)
    )
    model = ApplicabilityModel(embedder, never)
    assert model.classify(text, embedder.embed([text])[0]) == InstructionKind.constraint


@pytest.mark.slow
def test_shipped_weights_with_minilm_are_deterministic_and_sane() -> None:
    embedder = SentenceTransformerEmbedder()
    first = LearnedApplicability.load(embedder.model_id, embedder.dim)
    second = LearnedApplicability.load(embedder.model_id, embedder.dim, PATH)
    assert first is not None and second is not None
    texts = [
        "I get sick from shrimp.",  # no cue word; a constraint about food
        "I use a cane to get around.",  # no cue word; a constraint about getting around
        "Pastel colours are my favourite.",
        "I'm partial to Italian opera.",
    ]
    vectors = embedder.embed(texts)
    probabilities = [first.constraint_probability(v) for v in vectors]
    assert probabilities == [second.constraint_probability(v) for v in vectors]
    assert [p >= 0.5 for p in probabilities] == [True, True, False, False]
    assert all(classify(t) == InstructionKind.style for t in texts)  # the cues see none
    assert "food" in first.constraint_domains(vectors[0])
    proba = first.domain_probabilities(vectors[3])
    assert proba.sum() == pytest.approx(1.0)
    assert DOMAINS[int(np.argmax(proba))] in {"music", "screen"}
    model = ApplicabilityModel(embedder)
    shrimp = model.derive(texts[0], vectors[0])
    assert shrimp.kind == InstructionKind.constraint and "food" in shrimp.domains
    assert model.derive(texts[0], vectors[0]) == shrimp


def test_training_refuses_the_blind_split() -> None:
    """heldout2 is the reporting split: the training script will not learn from it (it
    stops before loading any model or data)."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "train_applicability.py"
    done = subprocess.run(
        [sys.executable, str(script), "--splits", "dev,heldout2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2 and "heldout2 is the blind reporting split" in done.stderr
