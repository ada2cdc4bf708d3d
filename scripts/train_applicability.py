"""Trains the learned half of write-time applicability (personalization/learned_applicability.py)
and writes personalization/data/learned_applicability.npz. Deterministic: the same data and
embedder give the same file.

Trained on the seen splits of evals/data/selection_scale (`dev` and the former held-out
`heldout`, 480 pairs; `heldout2` is the blind reporting split and is never read) plus the
domain requests and topic words of personalization/domains.py, embedded with the packaged
MiniLM:

- kind: logistic regression, constraint vs style, on the preference's vector (gold `kind`);
- domains: multinomial logistic regression from a vector to the domain its question is
  about (the topic's domain; music or books by the question's nearest domain request),
  so a constraint learns where it applies, not what it says.

    PYTHONPATH=$PWD .venv/bin/python scripts/train_applicability.py [--cv] [--splits dev,heldout]

`--cv` prints 5-fold cross-validated accuracy (folds stratified by topic) instead of
writing the file. Needs scikit-learn (a dev dependency); the service reads the weights
with numpy only. scripts/selection_replay.py reuses `Training` to cross-fit the weights."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evals.prefeval.data import PrefItem  # noqa: E402
from evals.selection_scale import DATA, load_split  # noqa: E402
from personalization.domains import DOMAIN_REQUESTS, DOMAIN_TOPICS, DOMAINS  # noqa: E402
from personalization.embedder import Embedder, SentenceTransformerEmbedder  # noqa: E402
from personalization.learned_applicability import (  # noqa: E402
    FORMAT,
    PATH,
    LearnedApplicability,
)

SEEN = ("dev", "heldout")  # heldout2 is blind: never training data
C = 3.0  # inverse regularisation; chosen by the cross-validation on dev (1-30 within 0.03)
TOPIC_DOMAIN = {
    "travel_restaurant": "food",
    "travel_activities": "travel",
    "travel_hotel": "lodging",
    "travel_transportation": "transport",
    "entertainment_games": "games",
    "entertainment_movies": "screen",
    "entertainment_shows": "screen",
    "lifestyle_health": "health",
    "lifestyle_fit": "fitness",
    "lifestyle_beauty": "beauty",
    "lifestyle_dietary": "food",
    "education_learning_styles": "learning",
    "education_resources": "learning",
    "shop_fashion": "fashion",
    "shop_home": "home",
    "shop_motors": "cars",
    "shop_technology": "technology",
    "pet_ownership": "pets",
    "professional_work_style": "work",
}
AMBIGUOUS = {"entertainment_music_book": ("music", "books")}
Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Training:
    """Everything the regressions learn from, embedded once."""

    items: list[PrefItem]
    prefs: Matrix  # preference vectors
    questions: Matrix
    domain: npt.NDArray[np.int64]  # the domain each item's question is about
    constraint: npt.NDArray[np.bool_]  # gold kind
    proto: Matrix  # domain requests and topic words, labelled with their domain
    proto_y: npt.NDArray[np.int64]

    @classmethod
    def build(cls, embedder: Embedder, items: list[PrefItem]) -> Training:
        prefs = embedder.embed([i.preference for i in items])
        questions = embedder.embed([i.question for i in items])
        requests = [(d, r) for d in DOMAINS for r in (*DOMAIN_REQUESTS[d], DOMAIN_TOPICS[d])]
        owner = np.array([DOMAINS.index(d) for d in DOMAINS for _ in DOMAIN_REQUESTS[d]])
        request_vectors = embedder.embed([r for d in DOMAINS for r in DOMAIN_REQUESTS[d]])

        def label(n: int) -> int:
            topic = items[n].topic
            if topic in TOPIC_DOMAIN:
                return DOMAINS.index(TOPIC_DOMAIN[topic])
            choices = [DOMAINS.index(d) for d in AMBIGUOUS[topic]]
            cos = request_vectors @ questions[n]
            return max(choices, key=lambda c: float(cos[owner == c].max()))

        return cls(
            items=items,
            prefs=np.asarray(prefs, dtype=np.float32),
            questions=np.asarray(questions, dtype=np.float32),
            domain=np.array([label(n) for n in range(len(items))], dtype=np.int64),
            constraint=np.array([i.kind == "constraint" for i in items]),
            proto=np.asarray(embedder.embed([r for _, r in requests]), dtype=np.float32),
            proto_y=np.array([DOMAINS.index(d) for d, _ in requests], dtype=np.int64),
        )

    def fit(self, rows: npt.NDArray[np.int64]) -> tuple[LogisticRegression, LogisticRegression]:
        domains = LogisticRegression(C=C, max_iter=5000).fit(
            np.vstack([self.prefs[rows], self.proto]),
            np.concatenate([self.domain[rows], self.proto_y]),
        )
        kind = LogisticRegression(C=C, max_iter=5000).fit(self.prefs[rows], self.constraint[rows])
        return domains, kind

    def learned(self, rows: npt.NDArray[np.int64]) -> LearnedApplicability:
        """The regressions trained on `rows`, in the form the service reads."""
        weights, bias, kind_weights, kind_bias = _arrays(*self.fit(rows), self.prefs.shape[1])
        return LearnedApplicability(weights, bias, kind_weights, kind_bias)


def _arrays(
    domains: LogisticRegression, kind: LogisticRegression, dim: int
) -> tuple[Matrix, Matrix, Matrix, float]:
    weights = np.zeros((len(DOMAINS), dim), dtype=np.float32)
    bias = np.full(len(DOMAINS), -1e4, dtype=np.float32)
    weights[domains.classes_] = domains.coef_
    bias[domains.classes_] = domains.intercept_
    return weights, bias, kind.coef_[0].astype(np.float32), float(kind.intercept_[0])


def topic_folds(items: list[PrefItem], k: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row indices, `k` folds stratified by topic, seeded."""
    folds = StratifiedKFold(k, shuffle=True, random_state=0)
    return list(folds.split(np.zeros(len(items)), [i.topic for i in items]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", action="store_true", help="print 5-fold CV accuracy, write nothing")
    parser.add_argument("--splits", default=",".join(SEEN), help="training splits (not heldout2)")
    args = parser.parse_args()
    splits = tuple(s for s in args.splits.split(",") if s)
    if "heldout2" in splits:
        parser.error("heldout2 is the blind reporting split; it is never training data")
    embedder = SentenceTransformerEmbedder()
    items = [item for split in splits for item in load_split(DATA, split)]
    data = Training.build(embedder, items)
    if args.cv:
        top1 = top2 = kind_ok = 0
        for train, test in topic_folds(items):
            domains, kind = data.fit(train)
            proba = np.zeros((len(test), len(DOMAINS)))
            proba[:, domains.classes_] = domains.predict_proba(data.prefs[test])
            best = np.argsort(-proba, axis=1)
            top1 += int((best[:, 0] == data.domain[test]).sum())
            top2 += int((best[:, :2] == data.domain[test][:, None]).any(axis=1).sum())
            kind_ok += int((kind.predict(data.prefs[test]) == data.constraint[test]).sum())
        n = len(items)
        print(f"domain top-1 {top1 / n:.3f}, top-2 {top2 / n:.3f}, kind {kind_ok / n:.3f} (n={n})")
        return 0
    weights, bias, kind_weights, kind_bias = _arrays(
        *data.fit(np.arange(len(items))), data.prefs.shape[1]
    )
    PATH.parent.mkdir(parents=True, exist_ok=True)
    with PATH.open("wb") as out:
        np.savez(
            out,
            format=np.array(FORMAT),
            embedder=np.array(embedder.model_id),
            domains=np.array(DOMAINS),
            domain_weights=weights,
            domain_bias=bias,
            kind_weights=kind_weights,
            kind_bias=np.float32(kind_bias),
        )
    print(f"wrote {PATH.relative_to(ROOT)} ({PATH.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
