"""What each arm sends for one question: the same history (the preference turns, then
N filler turns, cut to the model's window), then the question in the arm's form.

- zero-shot: the question as is;
- reminder: PrefEval's reminder sentence appended;
- rag: the 5 history messages most similar to the question, quoted before it
  (PrefEval's RAG prompt), the history kept as well;
- tailor: the question as is, sent for a user whose profile holds the preference, so
  Tailor selects and composes it into the context (see runner.py);
- tailor-always (optional): the same with the instruction marked always-on, which
  separates Tailor's selection misses from the model's."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from personalization.embedder import Embedder
from personalization.messages import ChatMessage
from personalization.text import estimate_tokens

ARMS = ("zero-shot", "reminder", "rag", "tailor")
ALL_ARMS = (*ARMS, "tailor-always")
TURNS = (0, 10, 70, 300)

# PrefEval's reminder, verbatim, so the arm is the paper's.
REMINDER = (
    "\nIn your response, please ensure that you take into account our earlier discussion, "
    "and provide an answer that is consistent with my preference."
)
RAG_K = 5
LETTERS = "ABCD"
_PER_MESSAGE = 4  # role and separators, as ChatService counts them


def mcq_prompt(question: str, options: Sequence[str]) -> str:
    listed = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(options))
    return (
        f"{question}\n\nOptions:\n{listed}\n\n"
        "Which option fits me best? Answer with the letter only (A, B, C or D)."
    )


_LETTER = re.compile(r"\b([ABCD])\b")


def parse_choice(answer: str, options: Sequence[str]) -> int | None:
    """The chosen option's index: the first standalone letter A-D, else the one option
    whose text the answer quotes; None when neither (counted as wrong and reported)."""
    found = _LETTER.search(answer.strip())
    if found:
        return LETTERS.index(found.group(1))
    quoted = [i for i, text in enumerate(options) if text.lower()[:40] in answer.lower()]
    return quoted[0] if len(quoted) == 1 else None


def message_tokens(messages: Sequence[ChatMessage]) -> int:
    return sum(estimate_tokens(m.content) + _PER_MESSAGE for m in messages)


@dataclass(frozen=True, slots=True)
class Fitted:
    messages: list[ChatMessage]
    dropped: int  # history messages cut from the front to fit the window
    preference_kept: bool  # the preference turns are still in the context


def fit_window(
    preference_turns: Sequence[ChatMessage],
    filler: Sequence[ChatMessage],
    final: str,
    budget: int,
) -> Fitted:
    """Keep the newest history that fits `budget` tokens with the final message, as a
    chat app truncating a long conversation would: whole turns, oldest first out."""
    history = [*preference_turns, *filler]
    room = budget - message_tokens([ChatMessage("user", final)])
    start = 0
    while start < len(history) and message_tokens(history[start:]) > room:
        start += 2  # a (user, assistant) pair at a time
    kept = history[start:]
    return Fitted(
        messages=[*kept, ChatMessage("user", final)],
        dropped=min(start, len(history)),
        preference_kept=start == 0,
    )


class Retriever:
    """RAG top-k over history messages. Filler is the same for every item, so its
    vectors are computed once and reused."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self._known: dict[str, np.ndarray] = {}

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._known]
        if missing:
            for text, vector in zip(missing, self._embedder.embed(missing), strict=True):
                self._known[text] = vector
        return np.stack([self._known[t] for t in texts])

    def top(self, question: str, history: Sequence[ChatMessage], k: int = RAG_K) -> list[str]:
        if not history:
            return []
        query = self._embedder.embed([question])[0]
        scores = self._vectors([m.content for m in history]) @ query
        best = sorted(range(len(history)), key=lambda i: (-float(scores[i]), i))[:k]
        return [f"{history[i].role.capitalize()}: {history[i].content}" for i in sorted(best)]


def rag_prompt(question: str, excerpts: Sequence[str]) -> str:
    quoted = "\n".join(excerpts)
    return (
        "Before answering my question, please consider the following context from our "
        f"previous conversations. These are the {len(excerpts)} most relevant exchanges that "
        f"we had previously, which may contain information about my preferences:\n{quoted}\n\n"
        f"Now, please answer my question: {question}"
    )


def final_message(
    arm: str,
    prompt: str,
    question: str,
    history: Sequence[ChatMessage],
    retriever: Retriever | None,
) -> str:
    """`prompt` is what is asked (the MCQ adds options); retrieval looks for `question`."""
    if arm == "reminder":
        return prompt + REMINDER
    if arm == "rag":
        assert retriever is not None
        return rag_prompt(prompt, retriever.top(question, history))
    return prompt
