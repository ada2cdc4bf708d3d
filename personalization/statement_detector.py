"""Finds preferences a user states about themselves in their own chat messages, with
no generative model: the embedded default must capture "I'm allergic to peanuts" too.

Two stages, both measured on evals/data/capture (dev split; `tailor-eval run --suite
capture` reports dev and held-out):

1. Patterns pick candidate sentences: a first-person statement ("I'm allergic to...",
   "I prefer...", "I never...", "We don't celebrate...") or a standing request ("Please
   don't use emojis", "Always cite your sources"). Questions, hypotheticals ("if I
   were..."), quoted or reported speech ("I read that..."), one-off tasks about "this"
   and reactions ("I like the second one") are dropped before any scoring: they are
   not the user's standing preferences, whatever their words.
2. A logistic regression over MiniLM vectors (weights in statement_classifier.json,
   trained on the seen splits by evals/capture_train.py) scores each candidate; the
   candidate is kept when the score reaches the threshold stored with the weights.
3. A sentence no pattern takes, but which passes the same gates and is neither a
   question without its "?" ("do you like jazz.") nor about a third party ("my dad
   refuses...", "a colleague of mine is afraid of dogs") nor about "that"/"this"
   ("keep that in mind"), is kept when the classifier is surer of it: at the
   `fallback_threshold` stored with the weights. Users state traits in forms no
   pattern anticipates ("Mom of two under 5 here", "Carry-on only, always."), and
   each new author of the evaluation data brought new ones (README, issue 14).
   With another embedder the weights do not apply: the patterns decide alone and no
   fallback is taken.

Assistant text never reaches this module: callers pass the user's messages only."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from personalization.embedder import MINILM_ID, Embedder

QUOTE_CHARS = 300
CLASSIFIER_PATH = Path(__file__).resolve().parent / "statement_classifier.json"
# With another embedder than the one the classifier was fitted on (a deployment's own
# model, a test's fake), its weights mean nothing: patterns alone decide, at this score.
PATTERN_ONLY_CONFIDENCE = 0.6


@dataclass(frozen=True)
class DetectedStatement:
    text: str  # the preference as a first-person standing instruction
    quote: str  # the user's own words, at most QUOTE_CHARS
    confidence: float  # in [0, 1]
    message_index: int  # which of the given user messages it came from


@dataclass(frozen=True)
class Candidate:
    sentence: str
    text: str
    message_index: int
    pattern: bool = True  # False: no pattern took it (stage 3, the classifier's call)


_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+|(?<=:)\s+(?=[A-Z])")
_LEAD = re.compile(
    r"^(?:(?:(?:no|yes|yeah|nah)(?=\s*[,.!;:-])|hi|hello|hey|ok|okay|so|also|and|but|well|"
    r"honestly|sadly|actually|anyway|tbh|ngl|lol|"
    r"by the way|btw|just so you know|for the record|fyi|fun fact|quick note|"
    r"quick note before we start|oh|ah|thanks|one more thing|"
    r"good to know|note)\b[\s,:;!-]*)+",
    re.IGNORECASE,
)
_TAIL = re.compile(
    r"(?:,?\s+by the way|,?\s+btw|,?\s+though|,\s+(?:so|which|but|because|since|otherwise|"
    r"as|and so|it|they|lyrics|gyms|i|the)\b.*|"
    r"\s+so\s+(?=(?:I|we|you|it|they|please|pls|no|anything|keep|never|always|don't)\b).*)$",
    re.IGNORECASE,
)
_HYPOTHETICAL = re.compile(
    r"^\W*(?:if|suppose|supposing|imagine|pretend|assume|assuming|hypothetically|"
    r"let's say|lets say|say|what if|in a story|in my story|in the story|when you|"
    r"would|should|could)\b",
    re.IGNORECASE,
)
_REPORTED = re.compile(
    r"[\"\u201c\u201d\u2018]|(?<!\w)'[^']+'(?!\w)|"
    r"\b(?:i (?:read|heard|saw|was told|noticed) (?:that|somewhere)|"
    r"said|says|told me|wrote|according to|the article|the recipe|the movie|the book says)\b",
    re.IGNORECASE,
)
_TASK = re.compile(
    r"^\W*(?:translate|fix|rewrite|summari[sz]e|proofread|write|make|give|list|plan|"
    r"explain|recommend|tell|show|help|find|create|draft|compose)\b",
    re.IGNORECASE,
)
_ONE_OFF = re.compile(r"\b(?:this|that|these|those|the following|it|this one|above)\b", re.I)
_REACTION = re.compile(
    r"\bI (?:like|love|prefer|'ll take|will take) (?:the )?(?:first|second|third|last|"
    r"other|former|latter|\w+ one)\b|\bI (?:like|love|hate|prefer) (?:this|that|it|these|those)\b"
    r"(?! when)|\bI(?:'ll| will| was| were|'ve been|'d like to know|"
    r" think| guess| mean| see| agree| wonder| hope| just| got| did| went| tried| used)\b|"
    r"\byou (?:gave|suggested|wrote|sent|listed|mentioned|proposed|picked)\b",
    re.IGNORECASE,
)
# First-person sentences about the task at hand, not a lasting trait or taste: "I need
# help with my essay", "I want to book a table", "I'm looking for a laptop", anything
# pinned to today or next week.
_ONE_OFF_STATE = re.compile(
    r"\bI (?:need|'d like|would like) (?:to|help|a|an|some|the|directions|your)\b|"
    r"\bI want to (?!avoid|keep|stay|eat|cut|be|stick)\w+|"
    r"\bI(?:'m| am) (?:trying|looking|planning|hosting|organi[sz]ing|writing|reading|"
    r"waiting|moving|stuck|curious|wondering|thinking|at the|in the middle|not sure|a bit|"
    r"learning about|working on|going to|about to|getting|preparing|studying for)\b|"
    r"\bI(?:'m| am) (?:\w+ )?(?:tired|nervous|excited|stressed|bored|worried|anxious|"
    r"exhausted|confused|frustrated|overwhelmed|sick|sleepy|hungry|late|busy|happy|glad|"
    r"relieved|thrilled|proud|upset|annoyed|sad|disappointed)\b|"
    r"\bI have (?:a|an|some) (?:job )?(?:question|meeting|exam|test|interview|deadline|"
    r"appointment|call|problem|issue|idea)\b|\bI have (?:\w+ )?(?:minutes|hours)\b|"
    r"\b(?:today|tonight|tomorrow|later today|later|right now|"
    r"this (?:morning|afternoon|evening|weekend|week)|"
    r"on (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)|"
    r"next (?:week|month)|at \d)\b",
    re.IGNORECASE,
)
_ADVERBS = (
    r"(?:(?:really|always|usually|mostly|generally|also|honestly|truly|absolutely|just|"
    r"simply|totally|definitely|strongly|much|sadly|actually|normally|typically|still|"
    r"tend to|try to|do|kind of|rather|personally|only|mainly|increasingly|"
    r"very|so|\w+ly)\s+)*"
)
_VERBS = (
    r"(?:love|like|enjoy|adore|prefer|hate|dislike|detest|avoid|want|need|use|play|read|"
    r"write|work|follow|keep|eat|drink|speak|have|own|live|rent|travel|pick|choose|adopt|"
    r"buy|feed|homeschool|care|take|wear|watch|listen|cook|study|practi[sc]e|run|get|"
    r"'ve got|have got|can't stand|cannot stand|"
    r"'m (?:so |really |totally )?(?:done with|into|over)|"
    r"do not|don't|dont|never|can't|cannot|can not|won't|am|'m|m|'d prefer|'d rather|"
    r"would prefer|would rather|wouldn't|'d like|would like)"
)
_FIRST_PERSON = re.compile(rf"\b(?:I|we)\s*{_ADVERBS}{_VERBS}\b", re.IGNORECASE)
_FAVOURITE = re.compile(
    r"\bis my (?:\w+ )?(?:favou?rite|go-to|thing)\b|\bmy favou?rite\b|\btriggers? my\b|"
    r"\b(?:works?|is|are) (?:\w+ )?(?:better|best) for me\b|"
    # "running is just not for me", "fantasy isn't my thing", "no pork for me, ever"
    r"\b(?:is|are)(?: just| really| simply)? not (?:for me|my thing)\b|"
    r"\b(?:isn't|aren't|is not|are not)(?: really| just)? (?:for me|my thing)\b|"
    r"^\W*no [\w-]+(?: [\w-]+)? for me\b|"
    # "shellfish allergy here", "renter here", "big bebop nerd here", "window seat person"
    r"^\W*(?:[\w-]+ ){1,4}(?:here|person|nerd|fan|lover)(?=\s*(?:[,.!;]|$))",
    re.I,
)
# Stage 3 only (a pattern's own words already say who and what): a question typed
# without its "?", and a third party's taste or habit.
_ASKS = re.compile(
    r"^\W*(?:do|does|did|are|is|am|can|could|will|what|how|why|where|which|who|when|any|"
    r"anything)\b",
    re.IGNORECASE,
)
_THIRD_PARTY = re.compile(
    r"^\W*(?:(?:my|our|the|his|her|their|a|an) (?:[\w-]+ ){0,2}?(?:dad|father|mom|mum|"
    r"mother|parents?|sister|brother|wife|husband|partner|boyfriend|girlfriend|boss|manager|"
    r"coworker|co-worker|colleague|friend|son|daughter|kids?|child|client|customer|team|"
    r"roommate|flatmate|neighbou?r|teacher|doctor|family)s?\b(?:(?!\bI\b).)*?"
    r"\b(?:likes?|loves?|prefers?|hates?|refuses?|only|claims?|wants?|insists?|swears?|"
    r"thinks?|says?|is|are|can't|won't|doesn't|don't|never|always)\b|(?:he|she|they)\b)",
    re.IGNORECASE,
)
_SUBORDINATE = re.compile(r"^\W*(?:when|whenever|while|before|after|once)\b", re.I)
_REQUEST = re.compile(
    r"^\W*(?:(?:from now on|going forward|in future|in the future),?\s+)?"
    r"(?:(?:please|pls|kindly)\s+)?(?:(?:can|could|would) you\s+(?:please\s+)?)?"
    r"(?P<verb>always|never|don't|do not|avoid|stop|keep|use|reply|answer|respond|write|"
    r"include|cite|skip|talk|explain)\b(?P<rest>.*)$",
    re.IGNORECASE,
)
_PLEASE = re.compile(r"\b(?:please|pls|kindly|always|never|from now on|in general)\b", re.I)
# "I have a flat tyre", "I have a spreadsheet with sales data": owning a thing is usually
# the task at hand, while a condition, a dependant or a pet is lasting. A possession is
# kept when it names one of those, or when the classifier is sure of it anyway (without
# the classifier, only when it names one).
_POSSESSION = re.compile(r"^I(?:'ve got| have got| have| got)\b", re.IGNORECASE)
_LASTING_POSSESSION = re.compile(
    r"\b(?:dogs?|cats?|pupp(?:y|ies)|kittens?|pets?|parrots?|rabbits?|hamsters?|horses?|"
    r"birds?|kids?|child(?:ren)?|sons?|daughters?|bab(?:y|ies)|toddlers?|teen(?:ager)?s?|"
    r"twins|grandchildren|grandkids|allerg(?:y|ies)|intoleran(?:ce|t)|disease|disorder|"
    r"syndrome|condition|diabetes|asthma|arthritis|migraines?|adhd|autism|dyslexia|anxiety|"
    r"depression|epilepsy|c[o]?eliac|ibs|blood pressure|cholesterol|injur(?:y|ies)|"
    r"tinnitus|insomnia|chronic|bad (?:back|knees?|hips?|shoulders?|ankles?|wrists?|eyes|"
    r"hearing|eyesight)|(?:back|knee|joint|neck) pain|hearing loss|low vision)\b",
    re.IGNORECASE,
)
POSSESSION_CONFIDENCE = 0.6
_CONTRACTIONS = ((r"\bI'm\b", "I am"), (r"\bIm\b", "I am"), (r"\bdont\b", "don't"))


# Phones and word processors type curly apostrophes and quotes: read them as plain ones.
_TYPOGRAPHIC = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
# A standing request joined to a statement by a comma starts its own clause: "English is
# not my first language, please always use simple words".
_CLAUSE = re.compile(
    r"[,;]\s+(?=(?:please|pls|kindly|so please|from now on)\b)|\s+[\u2014\u2013]\s+", re.IGNORECASE
)


def split_sentences(message: str) -> list[str]:
    text = message.translate(_TYPOGRAPHIC)
    parts = (p.strip() for s in _SENTENCE.split(text) if s for p in _CLAUSE.split(s))
    return [p for p in parts if p]


def strip_lead(sentence: str) -> str:
    """Without its opening chatter ("Honestly,", "By the way"): what is scored and quoted."""
    return _LEAD.sub("", sentence.strip()).strip()


def _finish(text: str) -> str:
    text = text.strip(" ,;:-—")
    for pattern, replacement in _CONTRACTIONS:
        text = re.sub(pattern, replacement, text)
    text = re.sub(r"[.!]+$", "", text).strip()
    return (text[:1].upper() + text[1:] + ".") if text else ""


def _cut_tail(text: str) -> str:
    """Drops what follows the statement ("..., so keep that in mind", "..., by the
    way"): the instruction is the main clause; the quote keeps the rest."""
    text = text.strip().rstrip(".!")
    while True:
        shorter = _TAIL.sub("", text).strip()
        if shorter == text:
            return text
        text = shorter


def _request_text(verb: str, rest: str) -> str:
    """A standing request in the user's voice: "Please don't use emojis" becomes
    "I don't want you to use emojis." so every captured item reads as the user's own."""
    rest = re.sub(r",?\s*please\b", "", rest, flags=re.I).strip(" ,")
    rest = _cut_tail(rest)
    low = verb.lower()
    if low in {"don't", "do not", "never", "stop"}:
        return _finish(f"I don't want you to {rest}")
    if low == "avoid":
        return _finish(f"I want you to avoid {rest}")
    if low == "always":
        return _finish(f"I want you to always {rest}")
    return _finish(f"I want you to {low} {rest}")


def _excluded(body: str) -> bool:
    """Cannot be the user's standing preference, whatever its words: hypothetical,
    reported or quoted, a reaction to the thing at hand, a one-off state or plan."""
    question = body.rstrip().endswith("?")
    if _HYPOTHETICAL.search(body) and not question:
        return True
    return bool(_REPORTED.search(body) or _REACTION.search(body) or _ONE_OFF_STATE.search(body))


def fallback(sentence: str, message_index: int) -> Candidate | None:
    """Stage 3's candidate: the sentence itself, as said (its tail cut), for the
    classifier alone to judge; None when a gate rules it out."""
    body = strip_lead(sentence)
    if not body or len(body) > 400 or body.rstrip().endswith("?") or _excluded(body):
        return None
    if _TASK.search(body) or _ASKS.search(body) or _THIRD_PARTY.search(body):
        return None
    if _ONE_OFF.search(body.split(",")[0]):
        return None
    text = _finish(_cut_tail(body))
    return Candidate(body, text, message_index, pattern=False) if text else None


def candidate(sentence: str, message_index: int) -> Candidate | None:
    """The sentence as a statement to score, or None when it cannot be the user's
    standing preference (question, hypothetical, reported speech, one-off task)."""
    body = strip_lead(sentence)
    if not body or len(body) > 400:
        return None
    question = body.rstrip().endswith("?")
    if _excluded(body):
        return None
    request = _REQUEST.match(body)
    if request and _PLEASE.search(body):
        rest = request.group("rest").rstrip("?")
        if _ONE_OFF.search(rest.split(",")[0]) and not re.search(r"\balways|never\b", body, re.I):
            return None
        if question and not re.search(r"\b(?:always|never|from now on)\b", body, re.I):
            return None
        return Candidate(body, _request_text(request.group("verb"), rest), message_index)
    if question or _TASK.search(body) or _HYPOTHETICAL.search(body):
        return None
    matches = list(_FIRST_PERSON.finditer(body))
    if _SUBORDINATE.search(body) and len(matches) > 1:
        matches = matches[1:]  # "When I work I prefer...": the main clause's subject
    favourite = _FAVOURITE.search(body)
    first = matches[0] if matches else None
    before = favourite is not None and (first is None or favourite.start() < first.start())
    found = favourite if before else first
    if not found:
        return None
    clause = body[found.start() :] if found.re is _FIRST_PERSON else body
    if re.match(r"(?i)we\b", clause) is None and found.re is _FIRST_PERSON:
        clause = "I" + clause[1:]
    return Candidate(body, _finish(_cut_tail(clause)), message_index)


def candidates(user_messages: Sequence[str], *, fallbacks: bool = False) -> list[Candidate]:
    """Every pattern candidate, in the order said; with `fallbacks`, stage 3's too
    (for sentences no pattern took)."""
    found: list[Candidate] = []
    for index, message in enumerate(user_messages):
        for sentence in split_sentences(message):
            hit = candidate(sentence, index)
            if (hit is None or not hit.text) and fallbacks:
                hit = fallback(sentence, index)
            if hit is not None and hit.text:
                found.append(hit)
    return found


@dataclass(frozen=True)
class Classifier:
    weights: np.ndarray
    bias: float
    threshold: float
    embedder_id: str = MINILM_ID
    fallback_threshold: float | None = None  # None: no stage 3

    def fits(self, embedder: Embedder) -> bool:
        return embedder.model_id == self.embedder_id and embedder.dim == self.weights.shape[0]

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        logits = vectors @ self.weights + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float64)


def load_classifier(path: Path = CLASSIFIER_PATH) -> Classifier:
    return classifier_from(json.loads(path.read_text(encoding="utf-8")))


def classifier_from(found: dict[str, Any]) -> Classifier:
    """The classifier a fit wrote (statement_classifier.json's fields)."""
    return Classifier(
        weights=np.asarray(found["weights"], dtype=np.float32),
        bias=float(found["bias"]),
        threshold=float(found["threshold"]),
        embedder_id=str(found.get("embedder", MINILM_ID)),
        fallback_threshold=(
            None if found.get("fallback_threshold") is None else float(found["fallback_threshold"])
        ),
    )


@cache
def _packaged_classifier() -> Classifier:
    return load_classifier()


def detect_statements(
    user_messages: Sequence[str],
    embedder: Embedder,
    *,
    classifier: Classifier | None = None,
) -> list[DetectedStatement]:
    """The preferences the user states in `user_messages`, once each (the first time
    a text is said), in the order they were said."""
    model = classifier or _packaged_classifier()
    fitted = model.fits(embedder)
    found = candidates(user_messages, fallbacks=fitted and model.fallback_threshold is not None)
    if not found:
        return []
    if fitted:
        scores = model.scores(embedder.embed([c.sentence for c in found]))
    else:
        scores = np.full(len(found), PATTERN_ONLY_CONFIDENCE)
    out: list[DetectedStatement] = []
    seen: set[str] = set()
    for cand, score in zip(found, scores, strict=True):
        if cand.pattern:
            threshold = model.threshold if fitted else 0.0
        else:
            threshold = model.fallback_threshold or 1.0  # only offered when fitted and set
        if score < threshold or cand.text.lower() in seen:
            continue
        if (
            _POSSESSION.match(cand.text)
            and not _LASTING_POSSESSION.search(cand.text)
            and (not fitted or score < POSSESSION_CONFIDENCE)
        ):
            continue
        seen.add(cand.text.lower())
        out.append(
            DetectedStatement(
                text=cand.text,
                quote=cand.sentence[:QUOTE_CHARS],
                confidence=round(float(score), 3),
                message_index=cand.message_index,
            )
        )
    return out
