"""Trains the learned half of write-time applicability (personalization/learned_applicability.py)
and writes personalization/data/learned_applicability.npz. Deterministic: the same data and
embedder give the same file.

Trained on the dev split of evals/data/selection_scale only (held-out is never read) plus
the domain requests and topic words of personalization/domains.py, embedded with the
packaged MiniLM:

- kind: logistic regression, constraint vs style, on the preference's vector (gold `kind`);
- domains: multinomial logistic regression from a vector to the domain its question is
  about (the topic's domain; music or books by the question's nearest domain request),
  so a constraint learns where it applies, not what it says.

    PYTHONPATH=$PWD .venv/bin/python scripts/train_applicability.py [--cv]

`--cv` prints 5-fold cross-validated accuracy (folds stratified by topic) instead of
writing the file. Needs scikit-learn (a dev dependency); the service reads the weights
with numpy only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evals.selection_scale import DATA, load_split  # noqa: E402
from personalization.domains import DOMAIN_REQUESTS, DOMAIN_TOPICS, DOMAINS  # noqa: E402
from personalization.embedder import SentenceTransformerEmbedder  # noqa: E402
from personalization.learned_applicability import FORMAT, PATH  # noqa: E402

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", action="store_true", help="print 5-fold CV accuracy, write nothing")
    args = parser.parse_args()
    embedder = SentenceTransformerEmbedder()
    items = load_split(DATA, "dev")
    prefs = embedder.embed([i.preference for i in items])
    questions = embedder.embed([i.question for i in items])
    requests = [(d, r) for d in DOMAINS for r in (*DOMAIN_REQUESTS[d], DOMAIN_TOPICS[d])]
    proto = embedder.embed([r for _, r in requests])
    proto_y = np.array([DOMAINS.index(d) for d, _ in requests])
    request_owner = np.array([DOMAINS.index(d) for d in DOMAINS for _ in DOMAIN_REQUESTS[d]])
    request_vectors = embedder.embed([r for d in DOMAINS for r in DOMAIN_REQUESTS[d]])

    def label(n: int) -> int:
        topic = items[n].topic
        if topic in TOPIC_DOMAIN:
            return DOMAINS.index(TOPIC_DOMAIN[topic])
        choices = [DOMAINS.index(d) for d in AMBIGUOUS[topic]]
        cos = request_vectors @ questions[n]
        return max(choices, key=lambda c: float(cos[request_owner == c].max()))

    y = np.array([label(n) for n in range(len(items))])
    kinds = np.array([i.kind == "constraint" for i in items])

    def fit(rows: np.ndarray) -> tuple[LogisticRegression, LogisticRegression]:
        domains = LogisticRegression(C=C, max_iter=5000).fit(
            np.vstack([prefs[rows], proto]), np.concatenate([y[rows], proto_y])
        )
        kind = LogisticRegression(C=C, max_iter=5000).fit(prefs[rows], kinds[rows])
        return domains, kind

    if args.cv:
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        top1 = top2 = kind_ok = 0
        for train, test in folds.split(prefs, [i.topic for i in items]):
            domains, kind = fit(train)
            proba = np.zeros((len(test), len(DOMAINS)))
            proba[:, domains.classes_] = domains.predict_proba(prefs[test])
            best = np.argsort(-proba, axis=1)
            top1 += int((best[:, 0] == y[test]).sum())
            top2 += int((best[:, :2] == y[test][:, None]).any(axis=1).sum())
            kind_ok += int((kind.predict(prefs[test]) == kinds[test]).sum())
        n = len(items)
        print(f"domain top-1 {top1 / n:.3f}, top-2 {top2 / n:.3f}, kind {kind_ok / n:.3f} (n={n})")
        return 0
    domains, kind = fit(np.arange(len(items)))
    weights = np.zeros((len(DOMAINS), prefs.shape[1]), dtype=np.float32)
    bias = np.full(len(DOMAINS), -1e4, dtype=np.float32)
    weights[domains.classes_] = domains.coef_
    bias[domains.classes_] = domains.intercept_
    PATH.parent.mkdir(parents=True, exist_ok=True)
    with PATH.open("wb") as out:
        np.savez(
            out,
            format=np.array(FORMAT),
            embedder=np.array(embedder.model_id),
            domains=np.array(DOMAINS),
            domain_weights=weights,
            domain_bias=bias,
            kind_weights=kind.coef_[0].astype(np.float32),
            kind_bias=np.float32(kind.intercept_[0]),
        )
    print(f"wrote {PATH.relative_to(ROOT)} ({PATH.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
