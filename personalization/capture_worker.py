"""The background worker that reads submitted conversations for stated preferences.

The loop, the lease and the retries are personalization/job_worker.py's. Per job: the
detector finds statements in the user's messages (the only text a job keeps), the
guard drops what is not a first-person preference about the user, and the plan
(personalization/capture.py) says, per statement, whether it repeats a known item
(reinforce it), contradicts an active instruction (suggest superseding it) or is new.
All of it is written in one transaction under the lease. A suggestion whose confidence
reaches `auto_accept` (None: never) is accepted in that same transaction, through the
API's accept path, its instruction keyed before the transaction opens: the job reads
`done` exactly when what it accepted applies to turns."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from personalization.capture import KnownItem, plan_capture
from personalization.embedder import Embedder
from personalization.job_worker import JobTerms, LeasedWorker, Ready
from personalization.statement_detector import DetectedStatement, detect_statements
from personalization.statement_guard import is_user_preference
from personalization.suggestions import CaptureService
from store.captures import Acceptance, CaptureRepository, NewSuggestion, new_suggestions, scope_of
from store.db import failure_text
from store.errors import TailorError
from store.instructions import InstructionRepository
from store.models import CaptureJob, Suggestion, SuggestionAction, SuggestionStatus
from store.scope import UserScope
from store.vector_index import decode_vector, encode_vector

log = logging.getLogger("tailor.captures")

Detector = Callable[[Sequence[str], Embedder], list[DetectedStatement]]


class CaptureWorker(LeasedWorker[CaptureJob]):
    def __init__(
        self,
        captures: CaptureRepository,
        instructions: InstructionRepository,
        embedder: Embedder,
        index: Ready,
        *,
        detect: Detector = detect_statements,
        guard: Callable[[str], bool] = is_user_preference,
        auto_accept: float | None = None,
        terms: JobTerms = JobTerms(),
    ) -> None:
        super().__init__(
            captures,
            index,
            noun="capture",
            terms=terms,
        )
        self._captures = captures
        self._instructions = instructions
        self._embedder = embedder
        self._detect = detect
        self._guard = guard
        self._auto_accept = auto_accept
        self.service: CaptureService | None = None  # set once built (it wakes this worker)

    def _known(self, scope: UserScope) -> list[KnownItem]:
        model, dim = self._embedder.model_id, self._embedder.dim

        def vector(row_model: str, row_dim: int, blob: bytes) -> npt.NDArray[np.float32] | None:
            return decode_vector(blob, row_dim) if (row_model, row_dim) == (model, dim) else None

        known = [
            KnownItem("instruction", instruction_id, text, vector(m, d, blob))
            for instruction_id, text, m, d, blob in self._instructions.current_texts(scope)
        ]
        active = {item.id for item in known}
        for row in self._captures.all_suggestions(scope):
            embedded = vector(row.embedding_model, row.embedding_dim, row.text_embedding)
            if row.status != SuggestionStatus.accepted:
                known.append(KnownItem("suggestion", row.id, row.text, embedded))
            elif row.instruction_id in active:
                # its words as first suggested stand for the instruction it became
                known.append(KnownItem("instruction", row.instruction_id, row.text, embedded))
        return known

    def _process(self, job: CaptureJob) -> None:
        scope = scope_of(job)
        try:
            statements = [
                s
                for s in self._detect(job.user_messages, self._embedder)
                if self._guard(s.text) and s.text.strip() and s.quote.strip()
            ]
            new: list[NewSuggestion] = []
            again_instructions: list[uuid.UUID] = []
            again_suggestions: list[uuid.UUID] = []
            if statements:
                vectors = self._embedder.embed([s.text for s in statements])
                plan = plan_capture(statements, vectors, self._known(scope))
                new = [
                    NewSuggestion(
                        text=p.statement.text[:1000],
                        text_key=p.key,
                        quote=p.statement.quote[:300],
                        confidence=float(p.statement.confidence),
                        action=SuggestionAction(p.action),
                        target_instruction_id=p.target_instruction_id,
                        embedding=encode_vector(p.vector),
                    )
                    for p in plan.proposals
                ]
                again_instructions = [r.id for r in plan.reinforcements if r.kind == "instruction"]
                again_suggestions = [r.id for r in plan.reinforcements if r.kind == "suggestion"]
            rows = new_suggestions(job, new, model=self._embedder.model_id, dim=self._embedder.dim)
            accept = self._auto_accepted(scope, rows)
            # accepting writes instructions: the service's finish takes the writer lock
            # and mirrors them into this replica's cache; without any, the plain finish
            finish = (
                self.service.finish_accepting
                if accept and self.service is not None
                else self._captures.finish
            )
            finish(
                job,
                self.owner,
                new=rows,
                accept=accept,
                reinforce_instructions=again_instructions,
                reinforce_suggestions=again_suggestions,
            )
        except Exception as exc:  # whatever failed, it is one failed attempt
            if isinstance(exc, TailorError):
                message = exc.message
            elif self._busy(exc, f"capturing {job.id}"):
                message = "the database was busy (another transaction held the lock)"
            else:
                log.exception("unexpected failure capturing %s", job.id)
                message = failure_text(exc)
            self._failed(job, message)

    def _auto_accepted(self, scope: UserScope, rows: Sequence[Suggestion]) -> list[Acceptance]:
        """The confident suggestions, keyed for accepting before the job's transaction.
        Of several that supersede one instruction, only the most confident is accepted
        (each would replace the version the others read); the rest stay pending for the
        user to decide."""
        if self._auto_accept is None or self.service is None:
            return []
        threshold = self._auto_accept
        confident = sorted(
            (row for row in rows if row.confidence >= threshold),
            key=lambda row: -row.confidence,
        )
        targets: set[uuid.UUID] = set()
        accept: list[Acceptance] = []
        for row in confident:
            target = row.target_instruction_id
            if row.action == SuggestionAction.supersede and target is not None:
                if target in targets:
                    continue
                targets.add(target)
            accept.append(self.service.prepare_accept(scope, row))
        return accept
