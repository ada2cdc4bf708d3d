"""CIPHER's interactive environment (Gao et al. 2024): an agent drafts a text for a
context; a simulated user with a hidden, source-specific preference edits the draft;
the cost is the word edit distance between draft and edit, summed over T rounds.

The simulated user is a model in two stages, as in the paper: "does this draft fit my
preference? yes/no", and only if not, "revise it to fit". Agents compared:

- no-learning: the model answers the task alone;
- ICL-edit-k: the k nearest past (context, draft, edit) triples shown as examples;
- CIPHER-k: Tailor itself, through its Python API: every edit goes through
  EditService.record and the inference worker; each draft is conditioned by the
  composed profile block from ContextBuilder (k nearest edit contexts, aggregated).

    python -m evals.cipher_env --rounds 15 --out cipher.json
    python -m evals.cipher_env --backend openai --base-url http://gpu:8000/v1 --model NAME
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from personalization.backends import Completion, Delta, GenerationSettings, ModelBackend
from personalization.edit_distance import edit_distance
from personalization.embedder import Embedder
from personalization.messages import ChatMessage
from store.scope import UserScope

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
    """CIPHER-k as Tailor runs it, through the service's own Python API."""

    def __init__(
        self, backend: ModelBackend, embedder: Embedder, settings: GenerationSettings, k: int
    ) -> None:
        from service.ports import build_ports
        from service.settings import Settings

        self.name = f"CIPHER-{k}"
        self._counted = Counter(backend)
        self._settings = settings
        self._k = k
        folder = Path(tempfile.mkdtemp(prefix="tailor-cipher-eval-"))
        self._ports = build_ports(Settings(data_dir=folder), embedder, self._counted)
        self._ports.index.load()
        tenant, _ = self._ports.keys.create_tenant("cipher-eval")
        from store.scope import TenantScope

        scope = TenantScope(tenant_id=tenant.id)
        self._ports.users.create(scope, "simulated-user")
        self._scope: UserScope = self._ports.users.resolve(scope, "simulated-user")
        self._applied: str | None = None

    @property
    def tokens(self) -> int:
        return self._counted.tokens

    def draft(self, context: str) -> str:
        turn = self._ports.context.build(
            self._scope,
            [ChatMessage("user", context)],
            self._ports.settings.context_options(examples_k=0, cipher_k=self._k),
        )
        self._applied = turn.inferred.text if turn.inferred else None
        messages = [ChatMessage("system", turn.system_message)] if turn.system_message else []
        messages.append(ChatMessage("user", context))
        return self._counted.ask(messages, self._settings)

    def learn(self, context: str, draft: str, edited: str) -> None:
        self._ports.edit_service.record(
            self._scope,
            context=context,
            draft=draft,
            edited=edited,
            task=None,
            applied_preference=self._applied,
        )
        while self._ports.worker.run_once():  # infer now: rounds are sequential
            pass

    def close(self) -> None:
        self._ports.engine.dispose()


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


def run(
    backend: ModelBackend,
    embedder: Embedder,
    *,
    rounds: int,
    seed: int,
    k: int = 5,
    max_tokens: int = 120,
    progress: bool = True,
    user_backend: ModelBackend | None = None,
) -> dict[str, Any]:
    settings = GenerationSettings(max_tokens=max_tokens, temperature=0.0, seed=seed)
    plan = load_rounds(rounds, seed)
    user = SimulatedUser(user_backend or backend, settings)
    makers: list[Callable[[], Agent]] = [
        lambda: NoLearning(backend, settings),
        lambda: IclEdit(backend, embedder, settings, k),
        lambda: CipherTailor(backend, embedder, settings, k),
    ]
    results = []
    for make in makers:
        agent = make()
        results.append(run_method(agent, user, plan, progress).summary())
        if isinstance(agent, CipherTailor):
            agent.close()
    return {
        "config": {
            "rounds": rounds,
            "seed": seed,
            "k": k,
            "max_tokens": max_tokens,
            "model": backend.model_id,
            "embedder": embedder.model_id,
        },
        "methods": results,
    }


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--backend", choices=["embedded", "openai"], default="embedded")
    parser.add_argument("--base-url")
    parser.add_argument("--model")
    parser.add_argument("--api-key")
    parser.add_argument("--user-base-url", help="simulated user on another OpenAI-compatible model")
    parser.add_argument("--user-model")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from personalization.embedder import SentenceTransformerEmbedder

    backend: ModelBackend
    if args.backend == "openai":
        from personalization.backends.openai_compatible import OpenAICompatibleBackend

        if not (args.base_url and args.model):
            parser.error("--backend openai needs --base-url and --model")
        backend = OpenAICompatibleBackend(args.base_url, args.model, api_key=args.api_key)
    else:
        from personalization.backends.llama_cpp import LlamaCppBackend

        backend = LlamaCppBackend()
    user_backend: ModelBackend | None = None
    if args.user_base_url:
        from personalization.backends.openai_compatible import OpenAICompatibleBackend

        user_backend = OpenAICompatibleBackend(
            args.user_base_url, args.user_model or "user", api_key=args.api_key
        )
    report = run(
        backend,
        SentenceTransformerEmbedder(),
        user_backend=user_backend,
        rounds=args.rounds,
        seed=args.seed,
        k=args.k,
        max_tokens=args.max_tokens,
    )
    print(table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
