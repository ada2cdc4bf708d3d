"""Where a standing instruction applies, derived once when it is written, and which
domains a turn is about, read off the query vector the turn already has.

Write time (`derive`): the item's kind (constraint or style) comes from lexical cues
(personalization/constraint_cues.py: 97.9% agreement with the dev split's gold labels;
MiniLM prototypes for the two kinds were not needed on top). Its domains are the ones
whose requests (personalization/domains.py) its text is closest to; a constraint's
add the domains its text names outright and its need's core ones, or, when it names
none, every domain its kind of need reaches (`constraint_domains`). Typical requests,
when set, are embedded as extra keys of the item, so a turn is matched against
situations where the preference matters, not only against its words (none are derived:
see TYPICAL_REQUESTS).

Per turn (`turn_domains`): one (prototypes x dim) matrix product with the query vector
and a max per domain; no model call, no SQL. The prototype matrix is embedded once when
the model is built (at start-up) with the same embedder as everything else."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy.engine import Engine

from personalization.constraint_cues import is_hard_rule, needs_of
from personalization.domains import DOMAIN_REQUESTS, DOMAINS, named_domains
from personalization.embedder import Embedder
from personalization.learned_applicability import LearnedApplicability
from store.derivation import Rederived, finished, rederive
from store.instructions import Applicability, InstructionChanges
from store.models import Instruction, InstructionKind, SetBy

Vector = npt.NDArray[np.float32]

# Tuned on the dev split only (see README, "Selection policy").
ITEM_DOMAINS = 2  # domains an item's text contributes (its nearest ones)
ITEM_DOMAIN_MIN = 0.2  # ...when its nearest request in them is at least this close
QUERY_DOMAINS = 2  # a turn is about its two nearest domains...
QUERY_DOMAIN_MIN = 0.3  # ...each when its nearest request is at least this close
QUERY_DOMAIN_MARGIN = 0.1  # ...and within this of the first: a clear lead is one domain
# Typical requests derived per item. Deriving the nearest domain requests as extra keys
# lowered dev recall at 50 preferences (0.787 -> 0.740 with 1, 0.750 with 2): shared
# generic requests pull every item of a domain up together. So none are derived; those
# a user or app sets are embedded as keys and do help (they are specific).
TYPICAL_REQUESTS = 0
# Bump when what `derive` gives for a stored text changes: rows derived by an older
# version are brought up to date once (store/derivation.py, `rederive_stored`).
# 3: the learned weights retrained on dev + heldout (480 pairs instead of dev's 280).
DERIVATION = "3-learned-seen"


@dataclass(frozen=True, slots=True)
class Derived:
    kind: InstructionKind
    domains: list[str]
    typical_requests: list[str]


@dataclass(frozen=True, slots=True)
class TurnDomains:
    """The turn's domain scores: raw (nearest request cosine per domain), centred and
    scaled to unit length (so an item's affinity compares domains against each other,
    not against how generic the query is), and the few the turn is about."""

    raw: dict[str, float]
    centred: dict[str, float]
    about: frozenset[str]

    def affinity(self, domains: Sequence[str]) -> float:
        """How well an item's best domain matches the turn (0 without domains)."""
        return max((self.centred[d] for d in domains if d in self.centred), default=0.0)

    def constraint_match(self, domains: Sequence[str]) -> float | None:
        """For a constraint: the turn's score for the best of its domains the turn is
        about, or None when the turn is about none of them."""
        matched = [self.raw[d] for d in domains if d in self.about]
        return max(matched) if matched else None


def constraint_domains(text: str, own: Sequence[str]) -> list[str]:
    """A constraint that names where it applies ("my lodging budget", "subtitles on
    everything I watch") applies there, in its nearest domains and in its need's core
    ones (a diet: food), not everywhere its kind of need could reach: on the dev split
    the broad lists made 66% of constraints match any turn and crowd out the rest.
    One that names no domain ("I'm a wheelchair user") reaches every domain of its need."""
    needs = needs_of(text)
    named = named_domains(text)
    if named:
        parts = [named, list(own), [d for need in needs for d in need.core]]
    else:
        parts = [list(own), [d for need in needs for d in need.domains]]
    domains: list[str] = []
    for part in parts:
        domains += [d for d in part if d not in domains]
    return domains


def classify(text: str) -> InstructionKind:
    """A constraint names a need (diet, allergy, health, access, belief, budget, family,
    content to avoid, a circumstance) or states a hard rule; anything else is a taste."""
    if needs_of(text) or is_hard_rule(text):
        return InstructionKind.constraint
    return InstructionKind.style


class ApplicabilityModel:
    def __init__(self, embedder: Embedder, learned: LearnedApplicability | None = None) -> None:
        """`learned` defaults to the shipped weights when they fit the embedder."""
        requests = [(d, r) for d in DOMAINS for r in DOMAIN_REQUESTS[d]]
        self._requests = [r for _, r in requests]
        self._owner = np.array([DOMAINS.index(d) for d, _ in requests])
        self._matrix = np.ascontiguousarray(embedder.embed(self._requests), dtype=np.float32)
        self.model_id = embedder.model_id
        self._learned = learned or LearnedApplicability.load(embedder.model_id, embedder.dim)

    @property
    def learned(self) -> bool:
        return self._learned is not None

    def classify(self, text: str, vector: Vector) -> InstructionKind:
        """The cues (`classify`), or the learned kind when they see no constraint: cues
        are precise on the wordings they know, the regression covers the others."""
        kind = classify(text)
        if kind == InstructionKind.style and self._learned and self._learned.is_constraint(vector):
            return InstructionKind.constraint
        return kind

    def _per_request(self, vector: Vector) -> npt.NDArray[np.float32]:
        return np.asarray(self._matrix @ vector, dtype=np.float32)

    def domain_scores(self, vector: Vector) -> npt.NDArray[np.float32]:
        """Each domain's score: the cosine of its nearest request to `vector`."""
        per_request = self._per_request(vector)
        scores = np.full(len(DOMAINS), -1.0, dtype=np.float32)
        np.maximum.at(scores, self._owner, per_request)
        return scores

    def _nearest(self, scores: npt.NDArray[np.float32], k: int, floor: float) -> list[str]:
        order = np.argsort(-scores, kind="stable")[:k]
        return [DOMAINS[i] for i in order if scores[i] >= floor]

    def turn_domains(self, vector: Vector) -> TurnDomains:
        """Per turn: a small matrix product with the query vector, no model call."""
        scores = self.domain_scores(vector)
        top = float(scores.max())
        centred = scores - scores.mean()
        norm = float(np.linalg.norm(centred)) or 1.0
        return TurnDomains(
            raw={d: float(scores[i]) for i, d in enumerate(DOMAINS)},
            centred={d: float(centred[i] / norm) for i, d in enumerate(DOMAINS)},
            about=frozenset(
                self._nearest(
                    scores, QUERY_DOMAINS, max(QUERY_DOMAIN_MIN, top - QUERY_DOMAIN_MARGIN)
                )
            ),
        )

    def derive(self, text: str, vector: Vector, kind: InstructionKind | None = None) -> Derived:
        """Kind (unless given), domains and typical requests of an item, from its text and
        its text's embedding (already computed for the item's main key)."""
        kind = kind or self.classify(text, vector)
        scores = self.domain_scores(vector)
        domains = self._nearest(scores, ITEM_DOMAINS, ITEM_DOMAIN_MIN)
        own = list(domains)
        if kind == InstructionKind.constraint:
            domains = constraint_domains(text, own)
            if self._learned is not None:
                learned = self._learned.constraint_domains(vector)
                domains += [d for d in learned if d not in domains]
        return Derived(kind, domains, self._typical_requests(vector, own))

    def _typical_requests(self, vector: Vector, domains: Sequence[str]) -> list[str]:
        if not domains:
            return []
        allowed = np.isin(self._owner, [DOMAINS.index(d) for d in domains])
        per_request = np.where(allowed, self._per_request(vector), -2.0)
        order = np.argsort(-per_request, kind="stable")[:TYPICAL_REQUESTS]
        return [self._requests[i] for i in order if allowed[i]]


def derivation_version(model: ApplicabilityModel) -> str:
    """Derivation depends on the embedder and on whether the learned weights fit it."""
    return f"{DERIVATION}:{model.model_id}:{'learned' if model.learned else 'lexical'}"


def rederive_stored(
    model: ApplicabilityModel, engine: Engine, *, force: bool = False
) -> int | None:
    """Bring stored rows to this derivation version, once (None: already done)."""
    version = derivation_version(model)
    if not force and finished(engine, version):
        return None

    def fresh(text: str, vector: Vector, kind: InstructionKind | None) -> Rederived:
        derived = model.derive(text, vector, kind)
        return Rederived(derived.kind, derived.domains)

    return rederive(engine, fresh, version, embedding_model=model.model_id)


def current_applicability(row: Instruction) -> Applicability | None:
    """What a stored version says; None for a row written before revision 0004."""
    if row.kind is None:
        return None
    return Applicability(
        kind=row.kind,
        kind_set_by=row.kind_set_by or SetBy.derived,
        domains=list(row.domains or []),
        typical_requests=list(row.typical_requests or []),
        applicability_set_by=row.applicability_set_by or SetBy.derived,
    )


def resolve_applicability(
    model: ApplicabilityModel,
    text: str,
    vector: Vector,
    previous: Applicability | None,
    changes: InstructionChanges,
) -> Applicability:
    """The applicability of the version being written. What the user set is kept, also
    across text changes, until the user sets it again or asks for re-derivation; what was
    derived is derived again from the new text. A legacy row counts as derived."""
    user, derived = SetBy.user, SetBy.derived
    if changes.kind is not None:
        kind, kind_by = changes.kind, user
    elif previous and previous.kind_set_by == user and not changes.rederive_kind:
        kind, kind_by = previous.kind, user
    else:
        kind, kind_by = model.classify(text, vector), derived
    fresh = model.derive(text, vector, kind)
    pinned = (
        previous is not None
        and previous.applicability_set_by == user
        and not changes.rederive_applicability
    )
    if changes.domains is not None or changes.typical_requests is not None:
        base = previous if pinned and previous else fresh
        domains = base.domains if changes.domains is None else changes.domains
        requests = (
            base.typical_requests if changes.typical_requests is None else changes.typical_requests
        )
        return Applicability(kind, kind_by, list(domains), list(requests), user)
    if pinned and previous:
        return Applicability(kind, kind_by, previous.domains, previous.typical_requests, user)
    return Applicability(kind, kind_by, fresh.domains, fresh.typical_requests, derived)
