"""A deterministic embedder for unit tests of logic: bag of hashed word stems, so texts
sharing words score higher. Never the only test of a path: the real model has its own."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence

import numpy as np

from personalization.backends import Completion, Delta, GenerationSettings
from personalization.embedder import Vectors
from personalization.messages import ChatMessage

_WORD = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    def __init__(self, dim: int = 64, model_id: str = "test/hashing-v1") -> None:
        self._dim = dim
        self._model_id = model_id
        self.calls = 0

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                stem = word[:5]
                digest = hashlib.blake2b(stem.encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "little") % self._dim] += 1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else out[row]
            if not norm:
                out[row, 0] = 1.0
        return out


class RecordingBackend:
    """Answers with a fixed sentence (streamed word by word) and records what it was
    sent, so tests can check how the profile was placed in the model's context."""

    def __init__(self, answer: str = "Here is a plan: - day one - day two") -> None:
        self.answer = answer
        self.received: list[list[ChatMessage]] = []

    @property
    def model_id(self) -> str:
        return "test/recording"

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        self.received.append(list(messages))
        return Completion(
            text=self.answer[: settings.max_tokens * 4],
            finish_reason="stop",
            model=self.model_id,
            prompt_tokens=sum(len(m.content) // 4 for m in messages),
            completion_tokens=len(self.answer) // 4,
        )

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> Iterator[Delta]:
        self.received.append(list(messages))
        words = self.answer.split(" ")
        for i, word in enumerate(words):
            yield Delta(text=word if i == 0 else " " + word)
        yield Delta(finish_reason="stop")


class RuleBackend(RecordingBackend):
    """Answers CIPHER's prompts by rule, so tests can predict the phrases: inference
    says "prefers shorter text" or "prefers longer text"; aggregation joins the items
    it was given. `fail_first` makes the first N calls raise BackendUnavailable."""

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__()
        self.fail_first = fail_first
        self.calls = 0

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        from personalization.backends import BackendUnavailable

        self.calls += 1
        self.received.append(list(messages))
        if self.calls <= self.fail_first:
            raise BackendUnavailable("model down (scripted)")
        prompt = messages[-1].content
        if "Rewritten text:" in prompt:
            draft = prompt.split("Original text: ", 1)[1].split("\n\nRewritten text:", 1)[0]
            edited = prompt.split("Rewritten text: ", 1)[1].split("\n\nDescribe", 1)[0]
            shorter = len(edited) < len(draft)
            text = '"Prefers shorter text."' if shorter else "Preference: longer text"
        elif "have in common" in prompt:
            items = [line[2:] for line in prompt.splitlines() if line.startswith("- ")]
            text = "combined: " + " + ".join(sorted(i.rstrip(".") for i in items))
        else:
            text = self.answer
        return Completion(text=text, finish_reason="stop", model=self.model_id)


class ExplodingBackend(RecordingBackend):
    """A route-level failure nobody planned for: the request must get a clean 500."""

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        raise RuntimeError("injected failure")

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> Iterator[Delta]:
        raise RuntimeError("injected failure")
