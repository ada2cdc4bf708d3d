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

INFER_PROMPT = (
    "An assistant wrote a draft and the user edited it.\n\n"
    "Draft:\n{draft}\n\nUser's edited version:\n{edited}\n\n"
    "In one short phrase (at most 12 words), state the user's preference about style, "
    "format or content that explains the edit. Reply with the phrase only."
)
AGGREGATE_PROMPT = (
    "Here are preferences a user showed in earlier edits:\n{items}\n\n"
    "Combine them into one short phrase (at most 20 words) that keeps what they agree on. "
    "Reply with the phrase only."
)
INFER_SETTINGS = GenerationSettings(max_tokens=40, temperature=0.0, seed=0)
PHRASE_CHARS = 200
_LEAD = re.compile(r"^(?:preference|phrase|answer|the user prefers?)\s*[:\-]\s*", re.IGNORECASE)
DRAFT_CHARS = 3000  # of draft and edit each, in the inference prompt


def clean_phrase(text: str) -> str | None:
    """The first non-empty line, without quotes, labels or list markers; None if empty."""
    for line in text.splitlines():
        phrase = line.strip().strip("\"'`*").strip()
        phrase = re.sub(r"^(?:[-*•]|\d+[.)])\s*", "", phrase)
        phrase = _LEAD.sub("", phrase).strip().strip("\"'").strip()
        if phrase:
            return phrase[:PHRASE_CHARS].rstrip()
    return None


def infer_messages(draft: str, edited: str) -> list[ChatMessage]:
    prompt = INFER_PROMPT.format(draft=draft[:DRAFT_CHARS], edited=edited[:DRAFT_CHARS])
    return [ChatMessage("user", prompt)]


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
                [ChatMessage("user", AGGREGATE_PROMPT.format(items=items))], INFER_SETTINGS
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
