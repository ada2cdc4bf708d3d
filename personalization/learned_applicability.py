"""The learned half of write-time applicability: two logistic regressions over an item's
MiniLM vector, one for its kind (constraint or style), one for the domain a question it
matters to is about. Trained by scripts/train_applicability.py on the seen splits (dev and
heldout, 480 pairs; never the blind heldout2) and the domain requests; shipped as a 33 kB
file of weights, read with numpy.

Why on top of the lexical cues (personalization/constraint_cues.py): the cues were
written while reading the dev split and miss wordings they were not written for (dev
constraint recall 0.94 vs held-out 0.76 at 50 preferences). The regressions are checked
by 5-fold cross-validation inside dev + heldout (kind 0.975, the question's domain in the
top two 0.77; dev alone: 0.957, 0.73): they generalise to unseen wordings, so a
constraint the cues miss is still a constraint, and still reaches the domains where such
constraints were asked about.

The weights belong to one embedder: with another one (`model_id` or dimension differ)
nothing is learned and derivation is lexical only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from personalization.domains import DOMAINS

PATH = Path(__file__).resolve().parent / "data" / "learned_applicability.npz"
FORMAT = "learned-applicability-1"

KIND_MIN = 0.5  # P(constraint) from which an item is a constraint even without a cue
CONSTRAINT_DOMAINS = 2  # learned domains a constraint reaches (its most likely ones)...
CONSTRAINT_DOMAIN_MIN = 0.2  # ...each when at least this likely

Vector = npt.NDArray[np.float32]


class LearnedApplicability:
    def __init__(
        self,
        domain_weights: npt.NDArray[np.float32],
        domain_bias: npt.NDArray[np.float32],
        kind_weights: npt.NDArray[np.float32],
        kind_bias: float,
    ) -> None:
        self._domain_weights = domain_weights
        self._domain_bias = domain_bias
        self._kind_weights = kind_weights
        self._kind_bias = kind_bias

    @classmethod
    def load(cls, embedder_id: str, dim: int, path: Path = PATH) -> LearnedApplicability | None:
        """The shipped weights, or None when they were trained for another embedder."""
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != FORMAT or str(data["embedder"]) != embedder_id:
                return None
            if tuple(str(d) for d in data["domains"]) != DOMAINS:
                raise ValueError(f"{path}: trained for other domains; rerun its training script")
            weights = np.asarray(data["domain_weights"], dtype=np.float32)
            if weights.shape != (len(DOMAINS), dim):
                return None
            return cls(
                weights,
                np.asarray(data["domain_bias"], dtype=np.float32),
                np.asarray(data["kind_weights"], dtype=np.float32),
                float(data["kind_bias"]),
            )

    def constraint_probability(self, vector: Vector) -> float:
        logit = float(self._kind_weights @ vector) + self._kind_bias
        return float(1.0 / (1.0 + np.exp(-logit)))

    def is_constraint(self, vector: Vector) -> bool:
        return self.constraint_probability(vector) >= KIND_MIN

    def domain_probabilities(self, vector: Vector) -> npt.NDArray[np.float64]:
        logits = self._domain_weights.astype(np.float64) @ vector + self._domain_bias
        logits -= logits.max()
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(), dtype=np.float64)

    def constraint_domains(self, vector: Vector) -> list[str]:
        """Where a constraint like this one was asked about: its most likely domains."""
        proba = self.domain_probabilities(vector)
        order = np.argsort(-proba, kind="stable")[:CONSTRAINT_DOMAINS]
        return [DOMAINS[i] for i in order if proba[i] >= CONSTRAINT_DOMAIN_MIN]
