"""Capture as the app sees it: submitting a conversation (202 at once; the worker reads
it later) and deciding on the suggestions captured from it.

Only the user's own messages are kept as evidence: assistant, tool, system and
developer text never becomes a preference of the user. From a chat turn only the
turn's own user messages (after the last assistant message) are submitted, so a
long chat is not read again, and its statements not counted again, on every turn.

Accepting a suggestion makes it a standing instruction with source `conversation`
and the capture's id and quote as provenance, through the same keys and the same
conditional, versioned writes as any instruction: a `new` one adds an instruction, a
`supersede` one writes the next version of its target (history kept). If the target
is gone by then (deleted), the accepted text becomes a new instruction instead."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from personalization.applicability import current_applicability
from personalization.messages import ChatMessage
from personalization.profile_writes import ProfileWriter
from store.captures import Acceptance, CaptureRepository, already_decided
from store.clock import utcnow
from store.errors import NotFound, TailorError
from store.index_manager import IndexManager
from store.instructions import (
    COLLECTION,
    InstructionChanges,
    InstructionRepository,
    first_version,
    next_version_row,
)
from store.models import (
    CaptureJob,
    Instruction,
    InstructionSource,
    Suggestion,
    SuggestionAction,
    SuggestionStatus,
)
from store.scope import UserScope

log = logging.getLogger("tailor.capture")


class Wakeable(Protocol):
    """What submitting needs of the worker: a nudge (it polls anyway)."""

    def wake(self) -> None: ...


def user_evidence(messages: Sequence[ChatMessage]) -> list[str]:
    """The user's own words, the only evidence of their preferences."""
    return [m.content for m in messages if m.role == "user" and m.content.strip()]


def this_turn(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The messages after the last assistant message: what the user said this turn."""
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    return list(messages[last + 1 :])


class CaptureService:
    def __init__(
        self,
        captures: CaptureRepository,
        instructions: InstructionRepository,
        writer: ProfileWriter,
        index: IndexManager,
        worker: Wakeable,
        *,
        queue_limit: int,
    ) -> None:
        self._captures = captures
        self._instructions = instructions
        self._writer = writer
        self._index = index
        self.worker = worker
        self._queue_limit = queue_limit

    def submit(
        self, scope: UserScope, messages: Sequence[ChatMessage], conversation_id: str | None
    ) -> CaptureJob:
        job = self._captures.submit(
            scope,
            user_messages=user_evidence(messages),
            conversation_id=conversation_id,
            queue_limit=self._queue_limit,
        )
        self.worker.wake()
        return job

    def submit_turn(self, scope: UserScope, messages: Sequence[ChatMessage]) -> None:
        """From a chat turn, after its answer went out: a failure (queue full, user
        deleted meanwhile) is logged, never the turn's."""
        turn = this_turn(messages)
        if not user_evidence(turn):
            return
        try:
            self.submit(scope, turn, None)
        except (TailorError, SQLAlchemyError) as exc:
            log.warning("chat turn not submitted for capture: %s", type(exc).__name__)

    def reject(self, scope: UserScope, suggestion_id: uuid.UUID) -> Suggestion:
        return self._captures.reject(scope, suggestion_id)

    def accept(
        self, scope: UserScope, suggestion_id: uuid.UUID, text: str | None = None
    ) -> tuple[Suggestion, Instruction]:
        """`text` rewords it (else the suggested text is taken). 409 when it was decided
        already, or when the target instruction changed while this was written."""
        self._index.require_ready()
        suggestion = self._captures.get(scope, suggestion_id)
        if suggestion.status != SuggestionStatus.pending:
            raise already_decided()
        acceptance = self.prepare_accept(scope, suggestion, text)
        with self._index.write_lock:
            decided = self._captures.accept(scope, suggestion, acceptance)
            self._mirror(acceptance)
        return decided, acceptance.instruction

    def prepare_accept(
        self, scope: UserScope, suggestion: Suggestion, text: str | None = None
    ) -> Acceptance:
        """The instruction accepting `suggestion` writes, keyed for its exact wording
        (the embedder and the derivation run here, before any transaction): a `new`
        one's first version, or a `supersede` one's next version of the target as read
        now. If the target is gone (deleted), the statement stands on its own."""
        wording = text if text is not None else suggestion.text
        target = None
        if suggestion.action == SuggestionAction.supersede and suggestion.target_instruction_id:
            try:
                target = self._instructions.get(scope, suggestion.target_instruction_id)
            except NotFound:
                target = None
        if target is None:
            keys = self._writer.instruction_keys(wording, None)
            row = first_version(scope, wording, None, False, InstructionSource.conversation, keys)
        else:
            changes = InstructionChanges(text=wording)
            keys = self._writer.instruction_keys(
                wording, target.applies_when, current_applicability(target), changes
            )
            row = next_version_row(scope, target, changes, keys, utcnow())
        row.capture_id = suggestion.capture_id
        row.capture_quote = suggestion.quote
        return Acceptance(suggestion.id, row, target)

    def finish_accepting(
        self,
        job: CaptureJob,
        owner: str,
        *,
        new: Sequence[Suggestion],
        accept: Sequence[Acceptance],
        reinforce_instructions: Sequence[uuid.UUID],
        reinforce_suggestions: Sequence[uuid.UUID],
    ) -> list[Suggestion] | None:
        """The worker's finish when it auto-accepts: one transaction (CaptureRepository
        .finish), then this replica's cache, under the writer lock like any accept."""
        with self._index.write_lock:
            rows = self._captures.finish(
                job,
                owner,
                new=new,
                accept=accept,
                reinforce_instructions=reinforce_instructions,
                reinforce_suggestions=reinforce_suggestions,
            )
            if rows is not None:
                for acceptance in accept:
                    self._mirror(acceptance)
        return rows

    def _mirror(self, acceptance: Acceptance) -> None:
        replaced = acceptance.replaces
        if replaced is not None:
            self._index.cache.remove(replaced.user_id, COLLECTION, replaced.id)
        self._writer.mirror(acceptance.instruction)
