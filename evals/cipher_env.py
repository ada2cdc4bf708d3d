"""CIPHER's interactive environment (Gao et al. 2024): an agent drafts a text for a
context; a simulated user with a hidden, source-specific preference edits the draft;
the cost is the word edit distance between draft and edit, summed over T rounds.

The simulated user is a model in two stages, as in the paper: "does this draft fit my
preference? yes/no", and only if not, "revise it to fit". Agents compared:

- no-learning: the model answers the task alone;
- ICL-edit-k: the k nearest past (context, draft, edit) triples shown as examples;
- CIPHER-k: Tailor itself, through its HTTP API: every edit is POSTed and inferred by
  the service's worker; each draft is conditioned by the block /context composes
  (k nearest edit contexts, aggregated).

    python -m evals run --suite cipher --in-process --out runs/cipher
    python -m evals run --suite cipher --service http://tailor:8000 --out runs/cipher
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from evals.client import ServiceModel, TailorClient
from personalization.backends import Completion, Delta, GenerationSettings, ModelBackend
from personalization.edit_distance import edit_distance
from personalization.embedder import Embedder
from personalization.messages import ChatMessage

DATA = Path(__file__).resolve().parent / "data" / "cipher_sources.json"


@dataclass(frozen=True, slots=True)
class Round:
    source: str
    preference: str
    context: str


def load_rounds(rounds: int, seed: int, path: Path = DATA) -> list[Round]:
    """`rounds` contexts drawn (with a fixed seed) across sources and documents."""
    data = json.loads(path.read_text())
    pool = [
        Round(s["name"], s["preference"], f"{s['task']}\n\n{doc}")
        for s in data["sources"]
        for doc in s["documents"]
    ]
    rng = random.Random(seed)  # noqa: S311 (a reproducible shuffle, not a secret)
    order: list[Round] = []
    while len(order) < rounds:
        batch = pool[:]
        rng.shuffle(batch)
        order.extend(batch)
    return order[:rounds]


# Small models open a rewrite with "Here's a revised version ...:"; that is not an edit.
_LEAD_IN = re.compile(r"^[^\n]{0,120}(?:here'?s|here is)[^\n]{0,120}:\s*\n", re.IGNORECASE)


@dataclass
class Counter:
    """A ModelBackend that counts the tokens spent through it, the paper's second cost;
    Tailor's own calls (inference, aggregation) go through it too for CIPHER-k."""

    backend: ModelBackend
    tokens: int = 0

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        done = self.backend.complete(messages, settings)
        self.tokens += done.prompt_tokens + done.completion_tokens
        return done

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> Iterator[Delta]:
        return self.backend.stream(messages, settings)

    def ask(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> str:
        return self.complete(messages, settings).text.strip()


class SimulatedUser:
    def __init__(self, backend: ModelBackend, settings: GenerationSettings) -> None:
        self._model = Counter(backend)
        self._settings = settings

    def fits(self, preference: str, draft: str) -> bool:
        answer = self._model.ask(
            [
                ChatMessage(
                    "user",
                    f"Text:\n{draft}\n\nIs this text written as {preference}? Answer yes or no.",
                )
            ],
            GenerationSettings(max_tokens=4, temperature=0.0, seed=0),
        )
        return bool(re.match(r"\W*yes\b", answer, re.IGNORECASE))

    def edit(self, preference: str, draft: str) -> str:
        if self.fits(preference, draft):
            return draft
        revised = self._model.ask(
            [
                ChatMessage("user", f"Rewrite this as {preference}:\n\n{draft}"),
            ],
            self._settings,
        )
        return _LEAD_IN.sub("", revised).strip() or draft


class Agent(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def tokens(self) -> int: ...

    def draft(self, context: str) -> str: ...

    def learn(self, context: str, draft: str, edited: str) -> None: ...


class NoLearning:
    name = "no-learning"

    def __init__(self, backend: ModelBackend, settings: GenerationSettings) -> None:
        self._model = Counter(backend)
        self._settings = settings

    @property
    def tokens(self) -> int:
        return self._model.tokens

    def draft(self, context: str) -> str:
        return self._model.ask([ChatMessage("user", context)], self._settings)

    def learn(self, context: str, draft: str, edited: str) -> None:  # noqa: ARG002
        return None


class IclEdit:
    """Retrieves the k nearest past contexts and shows their (draft, edit) pairs."""

    def __init__(
        self, backend: ModelBackend, embedder: Embedder, settings: GenerationSettings, k: int
    ) -> None:
        self.name = f"ICL-edit-{k}"
        self._model = Counter(backend)
        self._embedder = embedder
        self._settings = settings
        self._k = k
        self._memory: list[tuple[np.ndarray, str, str]] = []

    @property
    def tokens(self) -> int:
        return self._model.tokens

    def draft(self, context: str) -> str:
        messages = []
        if self._memory:
            query = self._embedder.embed([context])[0]
            ranked = sorted(self._memory, key=lambda m: -float(m[0] @ query))[: self._k]
            shots = "\n\n".join(
                f"Draft:\n{draft[:600]}\nThe user changed it to:\n{edited[:600]}"
                for _, draft, edited in ranked
            )
            messages.append(
                ChatMessage("system", f"Earlier drafts and how this user edited them:\n\n{shots}")
            )
        messages.append(ChatMessage("user", context))
        return self._model.ask(messages, self._settings)

    def learn(self, context: str, draft: str, edited: str) -> None:
        self._memory.append((self._embedder.embed([context])[0], draft, edited))


class CipherTailor:
    """CIPHER-k as Tailor runs it, through the public API: every edit is POSTed and the
    service's worker infers its preference; each draft is conditioned by the block that
    /context composes (k nearest edit contexts, aggregated), as an app would use it."""

    def __init__(
        self, client: TailorClient, model: ModelBackend, settings: GenerationSettings, k: int
    ) -> None:
        self.name = f"CIPHER-{k}"
        self._client = client
        self._model = Counter(model)
        self._settings = settings
        self._k = k
        self._user = "tailor-eval-cipher"
        client.fresh_user(self._user)
        self._applied: str | None = None

    @property
    def tokens(self) -> int:
        return self._model.tokens

    def draft(self, context: str) -> str:
        turn = self._client.context(self._user, context, cipher_k=self._k, examples_k=0)
        inferred = turn.get("inferred_preference")
        self._applied = inferred["text"] if inferred else None
        system = turn.get("system_message")
        messages = [ChatMessage("system", system["content"])] if system else []
        messages.append(ChatMessage("user", context))
        return self._model.ask(messages, self._settings)

    def learn(self, context: str, draft: str, edited: str) -> None:
        edit = self._client.record_edit(
            self._user,
            context=context,
            draft=draft,
            edited=edited,
            applied_preference=self._applied,
        )
        self._client.wait_edit(self._user, edit)  # rounds are sequential: infer first

    def close(self) -> None:
        self._client.delete_user(self._user)


@dataclass
class MethodResult:
    method: str
    costs: list[int] = field(default_factory=list)
    zero_edit_rounds: int = 0
    edited_words: int = 0
    tokens: int = 0

    def summary(self) -> dict[str, Any]:
        total = sum(self.costs)
        return {
            "method": self.method,
            "rounds": len(self.costs),
            "cumulative_edit_distance": total,
            "normalized_edit_distance": round(total / max(1, self.edited_words), 4),
            "zero_edit_rate": round(self.zero_edit_rounds / max(1, len(self.costs)), 4),
            "tokens": self.tokens,
            "cumulative_curve": list(np.cumsum(self.costs).tolist()),
        }


def run_method(
    agent: Agent, user: SimulatedUser, rounds: Sequence[Round], progress: bool = True
) -> MethodResult:
    result = MethodResult(agent.name)
    for item in tqdm(rounds, desc=agent.name, disable=not progress):
        draft = agent.draft(item.context)
        edited = user.edit(item.preference, draft)
        cost = edit_distance(draft, edited)
        result.costs.append(cost)
        result.zero_edit_rounds += cost == 0
        result.edited_words += max(1, len(edited.split()))
        agent.learn(item.context, draft, edited)
    result.tokens = agent.tokens
    return result


BARE_USER = "tailor-eval-cipher-bare"


def run(
    client: TailorClient,
    embedder: Embedder,
    *,
    rounds: int,
    seed: int,
    k: int = 5,
    max_tokens: int = 120,
    progress: bool = True,
    user_model: ModelBackend | None = None,
) -> dict[str, Any]:
    """Agents and simulated user use the model behind the service (a user with an empty
    profile gets it bare), unless `user_model` puts the simulated user elsewhere."""
    settings = GenerationSettings(max_tokens=max_tokens, temperature=0.0, seed=seed)
    plan = load_rounds(rounds, seed)
    client.fresh_user(BARE_USER)
    model = ServiceModel(client, BARE_USER)
    user = SimulatedUser(user_model or model, settings)
    makers: list[Callable[[], Agent]] = [
        lambda: NoLearning(model, settings),
        lambda: IclEdit(model, embedder, settings, k),
        lambda: CipherTailor(client, model, settings, k),
    ]
    results = []
    try:
        for make in makers:
            agent = make()
            results.append(run_method(agent, user, plan, progress).summary())
            if isinstance(agent, CipherTailor):
                agent.close()
    finally:
        client.delete_user(BARE_USER)
    return {
        "config": {
            "rounds": rounds,
            "seed": seed,
            "k": k,
            "max_tokens": max_tokens,
            "model": model.served_model,
            "user_model": user_model.model_id if user_model else model.served_model,
            "embedder": embedder.model_id,
            "tokens_counted": "the agents' drafting calls (Tailor's own inference and "
            "aggregation calls run inside the service and are not counted)",
        },
        "methods": results,
    }


def metrics(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for m in report["methods"]:
        name = f"cipher.{m['method']}"
        out.append(
            {
                "name": f"{name}.normalized_edit_distance",
                "n": m["rounds"],
                "value": m["normalized_edit_distance"],
                "kind": "cost",
            }
        )
        out.append(
            {
                "name": f"{name}.zero_edit_rate",
                "n": m["rounds"],
                "value": m["zero_edit_rate"],
                "kind": "rate",
            }
        )
    return out


def table(report: dict[str, Any]) -> str:
    lines = [
        "| method | cumulative edit distance | normalized | zero-edit rounds | tokens |",
        "|---|---|---|---|---|",
    ]
    for m in report["methods"]:
        lines.append(
            f"| {m['method']} | {m['cumulative_edit_distance']} | {m['normalized_edit_distance']}"
            f" | {m['zero_edit_rate']:.0%} | {m['tokens']} |"
        )
    return "\n".join(lines)
