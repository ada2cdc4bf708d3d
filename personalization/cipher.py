"""CIPHER (Gao et al. 2024): infer a short preference from a user's edit of a draft,
store it with the context's embedding, and at the next turn retrieve the k nearest
past contexts and aggregate their preferences into one phrase for the model.

Inference runs off the request path (see edit_worker.py). Aggregation is a model call
on the request path, so its result is cached by the exact set of preference versions
it combined: repeated turns over the same neighbours pay once, and any edit, accept or
reject changes the set and so the key."""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from personalization.backends import GenerationSettings, ModelBackend
from personalization.embedder import Vectors
from personalization.messages import ChatMessage
from store.edits import COLLECTION as EDITS
from store.errors import TailorError
from store.index_manager import IndexManager
from store.models import InferredPreference
from store.preferences import PreferenceRepository
from store.scope import UserScope

log = logging.getLogger("tailor.cipher")

# Framed as style analysis: asked to "state the user's preference", SmolLM2-135M replies
# with a refusal ("as a chatbot I cannot..."); asked to describe the rewritten text's
# style it gives a usable phrase. Larger models do well with either.
ANALYST = "You are a writing-style analyst."
INFER_PROMPT = (
    "Original text: {draft}\n\nRewritten text: {edited}\n\n"
    "Describe the style of the rewritten text in 3 to 8 words."
)
AGGREGATE_PROMPT = (
    "These notes each describe the writing style a reader prefers:\n{items}\n\n"
    "Summarise what they have in common in 3 to 12 words."
)
INFER_SETTINGS = GenerationSettings(max_tokens=40, temperature=0.0, seed=0)
PHRASE_CHARS = 200
PHRASE_WORDS = 20
_LEAD = re.compile(
    r"^(?:(?:preference|phrase|answer|style|summary)\s*[:\-]\s*"
    r"|the user prefers?\s*:?\s*"
    r"|(?:the\s+)?(?:rewritten|revised|edited)\s+(?:text|version)\s+(?:is|has|uses)\s+"
    r"|(?:they|the notes)\s+(?:all\s+)?(?:share|prefer|describe)\s+)",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"^(?:i'?m sorry|i am sorry|sorry|as an ai|as a chatbot"
    r"|i can(?:no|')t|i'?m unable|i am unable)",
    re.IGNORECASE,
)
DRAFT_CHARS = 3000  # of draft and edit each, in the inference prompt


def clean_phrase(text: str) -> str | None:
    """The first sentence of the first non-empty line, without quotes, labels, list
    markers or a restatement of the question, at most 20 words. None for nothing usable,
    including refusals: storing "I'm sorry, as a chatbot..." as a user's preference
    would be worse than storing nothing (the job is retried, then marked failed)."""
    for line in text.splitlines():
        phrase = line.strip().strip("\"'`*").strip()
        phrase = re.sub(r"^(?:[-*•]|\d+[.)])\s*", "", phrase)
        phrase = _LEAD.sub("", phrase).strip().strip("\"'").strip()
        if not phrase:
            continue
        if _REFUSAL.match(phrase):
            return None
        phrase = re.split(r"(?<=[.!?])\s", phrase, maxsplit=1)[0]
        words = phrase.split()
        if len(words) > PHRASE_WORDS:
            phrase = " ".join(words[:PHRASE_WORDS])
        return phrase[:PHRASE_CHARS].rstrip() or None
    return None


def infer_messages(draft: str, edited: str) -> list[ChatMessage]:
    prompt = INFER_PROMPT.format(draft=draft[:DRAFT_CHARS], edited=edited[:DRAFT_CHARS])
    return [ChatMessage("system", ANALYST), ChatMessage("user", prompt)]


@dataclass(frozen=True, slots=True)
class AggregatedPreference:
    text: str
    preference_ids: tuple[uuid.UUID, ...]  # stable ids of what was combined
    edit_ids: tuple[uuid.UUID, ...]
    aggregated_by_model: bool


class PreferenceAggregator:
    def __init__(self, backend: ModelBackend, *, max_entries: int = 4096) -> None:
        self._backend = backend
        self._cache: OrderedDict[tuple[uuid.UUID, tuple[uuid.UUID, ...]], str] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()
        self.model_calls = 0

    def forget_user(self, user_id: uuid.UUID) -> None:
        with self._lock:
            for key in [k for k in self._cache if k[0] == user_id]:
                del self._cache[key]

    def cached_users(self) -> set[uuid.UUID]:
        with self._lock:
            return {user_id for user_id, _ in self._cache}

    def aggregate(
        self,
        user_id: uuid.UUID,
        found: Sequence[tuple[uuid.UUID, InferredPreference]],
    ) -> AggregatedPreference | None:
        """`found` is (edit id, preference version), nearest first."""
        if not found:
            return None
        prefs = [p for _, p in found]
        distinct = list(dict.fromkeys(p.text for p in prefs))
        ids = tuple(dict.fromkeys(p.preference_id for p in prefs))
        edits = tuple(e for e, _ in found)
        if len(distinct) == 1:
            return AggregatedPreference(distinct[0], ids, edits, aggregated_by_model=False)
        key = (user_id, tuple(sorted(p.id for p in prefs)))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return AggregatedPreference(self._cache[key], ids, edits, aggregated_by_model=True)
        items = "\n".join(f"- {text}" for text in distinct)
        try:
            self.model_calls += 1
            done = self._backend.complete(
                [
                    ChatMessage("system", ANALYST),
                    ChatMessage("user", AGGREGATE_PROMPT.format(items=items)),
                ],
                INFER_SETTINGS,
            )
            phrase = clean_phrase(done.text)
        except TailorError as exc:
            log.warning("aggregating preferences failed (%s); using them side by side", exc.code)
            phrase = None
        if phrase is None:
            return AggregatedPreference("; ".join(distinct), ids, edits, aggregated_by_model=False)
        with self._lock:
            self._cache[key] = phrase
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return AggregatedPreference(phrase, ids, edits, aggregated_by_model=True)


class CipherRetriever:
    """k nearest past edit contexts → their applicable preferences → one phrase."""

    def __init__(
        self,
        index: IndexManager,
        preferences: PreferenceRepository,
        aggregator: PreferenceAggregator,
    ) -> None:
        self._index = index
        self._preferences = preferences
        self._aggregator = aggregator

    def retrieve(self, scope: UserScope, query: Vectors, k: int) -> AggregatedPreference | None:
        if k == 0:
            return None
        hits = self._index.cache.search(scope.user_id, EDITS, query, k=k)
        ranked = [h.row_id for h in hits]
        found = self._preferences.applicable_for_edits(scope, ranked)
        return self._aggregator.aggregate(
            scope.user_id, [(edit_id, found[edit_id]) for edit_id in ranked if edit_id in found]
        )
