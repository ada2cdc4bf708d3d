"""SQLModel tables. UUID primary keys everywhere an id leaves the process; the change
log's integer sequence is internal (it orders replays, it is never exposed as an id)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from store.clock import utcnow


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Stores aware UTC datetimes; SQLite drops tzinfo, so it is put back on read."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY; Postgres wants BIGINT.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class InstructionStatus(StrEnum):
    active = "active"
    disabled = "disabled"
    deleted = "deleted"


class InstructionKind(StrEnum):
    """A constraint (allergy, diet, health, accessibility, religion, ethics, budget
    limit, hard never/always rule) is a harm when missed; a style is a taste."""

    constraint = "constraint"
    style = "style"


class SetBy(StrEnum):
    """Who decided a field that Tailor can derive: derived fields follow the text,
    the user's choice is kept until the user changes it (or asks for "auto")."""

    derived = "derived"
    user = "user"


class InstructionSource(StrEnum):
    user = "user"
    app = "app"
    inferred = "inferred"  # promoted from a preference inferred from the user's edits
    conversation = "conversation"  # a suggestion captured from the user's words, accepted


class Tenant(SQLModel, table=True):
    __tablename__ = "tenant"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ApiKey(SQLModel, table=True):
    """Only a hash of the secret is stored; the prefix finds the row, the hash proves it."""

    __tablename__ = "api_key"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True, ondelete="CASCADE")
    user_id: uuid.UUID | None = Field(
        default=None, foreign_key="app_user.id", index=True, ondelete="CASCADE"
    )
    name: str = Field(default="", max_length=200)
    prefix: str = Field(max_length=32, unique=True, index=True)
    key_hash: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AppUser(SQLModel, table=True):
    """An end user of a tenant's app, known to the app by its own external id."""

    __tablename__ = "app_user"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "external_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True, ondelete="CASCADE")
    external_id: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Instruction(SQLModel, table=True):
    """One version of a standing instruction.

    `instruction_id` is the stable id the API shows; each change writes a new row and
    closes the old one (valid_to, superseded_by), so history is kept and restorable.
    The embeddings live on the row: the FAISS index is only a cache of them.
    """

    __tablename__ = "instruction"
    __table_args__ = (
        sa.UniqueConstraint("instruction_id", "version"),
        sa.Index("ix_instruction_scope_current", "tenant_id", "user_id", "valid_to"),
        # One current version per instruction, enforced by the database (see versioning).
        sa.Index(
            "ux_instruction_current",
            "instruction_id",
            unique=True,
            sqlite_where=sa.text("valid_to IS NULL"),
            postgresql_where=sa.text("valid_to IS NULL"),
        ),
        # A preference is promoted once: one instruction (first version) per preference.
        sa.Index(
            "ux_instruction_promoted_from",
            "promoted_from",
            unique=True,
            sqlite_where=sa.text("version = 1"),
            postgresql_where=sa.text("version = 1"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    instruction_id: uuid.UUID = Field(index=True)
    version: int = 1
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="app_user.id", index=True, ondelete="CASCADE")
    text: str = Field(max_length=4000)
    applies_when: str | None = Field(default=None, max_length=4000)
    always_on: bool = False
    status: InstructionStatus = Field(default=InstructionStatus.active, sa_type=sa.String(16))
    source: InstructionSource = Field(default=InstructionSource.app, sa_type=sa.String(16))
    created_by_key: uuid.UUID | None = None
    promoted_from: uuid.UUID | None = Field(
        default=None, description="preference_id this instruction was promoted from"
    )
    embedding_model: str = Field(max_length=200)
    embedding_dim: int
    text_embedding: bytes = Field(sa_type=sa.LargeBinary)
    condition_embedding: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    # Where it applies, derived at write time (personalization/applicability.py) or set
    # by the user; NULL on rows written before revision 0004 (unknown: scored by text
    # and condition only, until the item's text or applicability is next written).
    kind: InstructionKind | None = Field(default=None, sa_type=sa.String(16))
    kind_set_by: SetBy | None = Field(default=None, sa_type=sa.String(16))
    domains: list[str] | None = Field(default=None, sa_type=sa.JSON)
    typical_requests: list[str] | None = Field(default=None, sa_type=sa.JSON)
    applicability_set_by: SetBy | None = Field(default=None, sa_type=sa.String(16))
    # float32 vectors of `typical_requests`, concatenated (extra retrieval keys)
    request_embeddings: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    valid_from: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    valid_to: datetime | None = Field(default=None, sa_type=UTCDateTime)
    superseded_by: uuid.UUID | None = None
    # How often the user restated it in conversation, and when last (capture); carried
    # to each new version, so a rewording keeps the count.
    seen_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Provenance of a version written by accepting a captured suggestion: the capture
    # job and the user's own words (carried to later versions until another capture).
    capture_id: uuid.UUID | None = None
    capture_quote: str | None = Field(default=None, max_length=300)


class ChangeLog(SQLModel, table=True):
    """Audit trail and replay log in one: every write appends a row in its own
    transaction, so a snapshot knows exactly which changes it has not seen.

    It holds ids and actions only, never profile text.
    """

    __tablename__ = "change_log"
    # A turn reads its user's latest seq (is this replica's cache current?): one probe.
    __table_args__ = (sa.Index("ix_change_log_user_seq", "user_id", "seq"),)

    seq: int | None = Field(default=None, sa_type=BigIntPK, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    tenant_id: uuid.UUID = Field(index=True)
    user_id: uuid.UUID | None = Field(default=None, index=True)
    key_id: uuid.UUID | None = None
    entity: str = Field(max_length=32)
    entity_id: uuid.UUID
    action: str = Field(max_length=32)
    version: int | None = None


class DerivationRun(SQLModel, table=True):
    """A version of write-time derivation (kind, domains) that every stored row has been
    brought to (store/derivation.py): a replica that finds its version here skips the
    backfill; the primary key settles two replicas finishing it at once."""

    __tablename__ = "derivation_run"

    version: str = Field(primary_key=True, max_length=200)
    finished_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated: int = 0


class ExampleStatus(StrEnum):
    active = "active"
    deleted = "deleted"


class PreferenceExample(SQLModel, table=True):
    """A (prompt, chosen, rejected) triple of this user's taste (FSPO). Immutable: to
    change one, delete it and add another; a delete closes it (valid_to) and keeps it."""

    __tablename__ = "preference_example"
    __table_args__ = (sa.Index("ix_example_scope_current", "tenant_id", "user_id", "valid_to"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="app_user.id", index=True, ondelete="CASCADE")
    prompt: str = Field(max_length=8000)
    chosen: str = Field(max_length=16000)
    rejected: str = Field(max_length=16000)
    status: ExampleStatus = Field(default=ExampleStatus.active, sa_type=sa.String(16))
    created_by_key: uuid.UUID | None = None
    embedding_model: str = Field(max_length=200)
    embedding_dim: int
    prompt_embedding: bytes = Field(sa_type=sa.LargeBinary)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    valid_to: datetime | None = Field(default=None, sa_type=UTCDateTime)


class InferenceStatus(StrEnum):
    pending = "pending"  # queued for the worker
    running = "running"  # claimed by a worker under a lease (reclaimed once it expires)
    done = "done"  # a preference was inferred
    skipped = "skipped"  # the edit was trivial: nothing to infer
    failed = "failed"  # gave up after the retries


class PreferenceStatus(StrEnum):
    suggested = "suggested"  # inferred, applied, awaiting the user's review
    accepted = "accepted"
    rejected = "rejected"  # never applied again
    promoted = "promoted"  # now a standing instruction; not applied twice


class Edit(SQLModel, table=True):
    """A user's edit of a model output (CIPHER). The context's embedding is stored with
    the row; the inference job's state lives here too, so a restart loses nothing.
    A running job is leased: `lease_owner` holds it until `lease_expires_at`."""

    __tablename__ = "edit"
    __table_args__ = (
        sa.Index("ix_edit_queue", "inference_status", "next_attempt_at"),
        sa.Index("ix_edit_lease", "inference_status", "lease_expires_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True, ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="app_user.id", index=True, ondelete="CASCADE")
    context: str = Field(max_length=8000)
    draft: str = Field(max_length=16000)
    edited: str = Field(max_length=16000)
    task: str | None = Field(default=None, max_length=64)
    applied_preference: str | None = Field(default=None, max_length=1000)
    distance: float
    created_by_key: uuid.UUID | None = None
    embedding_model: str = Field(max_length=200)
    embedding_dim: int
    context_embedding: bytes = Field(sa_type=sa.LargeBinary)
    inference_status: InferenceStatus = Field(sa_type=sa.String(16))
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=500)
    preference_id: uuid.UUID | None = Field(default=None, index=True)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class InferredPreference(SQLModel, table=True):
    """One version of a preference inferred from an edit; `preference_id` is stable."""

    __tablename__ = "inferred_preference"
    __table_args__ = (
        sa.UniqueConstraint("preference_id", "version"),
        sa.Index("ix_preference_scope_current", "tenant_id", "user_id", "valid_to"),
        sa.Index(
            "ux_preference_current",
            "preference_id",
            unique=True,
            sqlite_where=sa.text("valid_to IS NULL"),
            postgresql_where=sa.text("valid_to IS NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    preference_id: uuid.UUID = Field(index=True)
    version: int = 1
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="app_user.id", index=True, ondelete="CASCADE")
    text: str = Field(max_length=1000)
    status: PreferenceStatus = Field(sa_type=sa.String(16))
    source_edit_id: uuid.UUID | None = None
    promoted_instruction_id: uuid.UUID | None = None
    created_by_key: uuid.UUID | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    valid_from: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    valid_to: datetime | None = Field(default=None, sa_type=UTCDateTime)
    superseded_by: uuid.UUID | None = None


class IdempotencyRecord(SQLModel, table=True):
    """A POST made with an `Idempotency-Key`, and the response it got, so a retry with
    the same key gets the same answer instead of a second write. The unique key
    settles racing retries in the database. `status` is None while the first request
    is still running. Records expire (`expires_at`) and go with their user."""

    __tablename__ = "idempotency_record"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "key", "method", "path"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", ondelete="CASCADE")
    user_id: uuid.UUID | None = Field(
        default=None, foreign_key="app_user.id", index=True, ondelete="CASCADE"
    )
    key: str = Field(max_length=255)
    method: str = Field(max_length=8)
    path: str = Field(max_length=1000)
    request_hash: str = Field(max_length=64)
    status: int | None = None
    response_body: str | None = Field(default=None, sa_type=sa.Text)
    response_headers: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class ImportedItem(SQLModel, table=True):
    """Which item of an export a restored row came from: importing the same export again
    skips what is already here, and the unique key settles two concurrent imports."""

    __tablename__ = "imported_item"
    __table_args__ = (sa.UniqueConstraint("user_id", "kind", "source_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True, ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="app_user.id", ondelete="CASCADE")
    kind: str = Field(max_length=16)
    source_id: uuid.UUID
    item_id: uuid.UUID
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TurnRecord(SQLModel, table=True):
    """Provenance of one of the user's recent turns (/context or chat): which profile
    items were used and why, as ids, versions, reasons and scores. No message text
    unless the operator opts in (then only the last user message, clipped). Bounded
    per user: each insert prunes the user's oldest beyond the kept number."""

    __tablename__ = "turn_record"
    __table_args__ = (sa.Index("ix_turn_record_user_at", "user_id", "at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True, ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="app_user.id", ondelete="CASCADE")
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    endpoint: str = Field(max_length=16)
    items: list[dict[str, object]] = Field(default_factory=list, sa_type=sa.JSON)
    message: str | None = Field(default=None, max_length=1000)


class CaptureJob(SQLModel, table=True):
    """A conversation submitted for capture: the job is the row (leased like an edit's
    inference, see store/job_queue.py). Only the user's own messages are kept, and only
    until the job is done or has failed for good; the suggestions keep a short quote."""

    __tablename__ = "capture_job"
    __table_args__ = (
        sa.Index("ix_capture_job_queue", "status", "next_attempt_at"),
        sa.Index("ix_capture_job_lease", "status", "lease_expires_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True, ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="app_user.id", index=True, ondelete="CASCADE")
    conversation_id: str | None = Field(default=None, max_length=200)
    user_messages: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    created_by_key: uuid.UUID | None = None
    status: InferenceStatus = Field(sa_type=sa.String(16))
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=500)
    suggestion_ids: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SuggestionStatus(StrEnum):
    pending = "pending"  # awaiting the user's (or the app's) decision; not applied
    accepted = "accepted"  # now a standing instruction (a new one, or a new version)
    rejected = "rejected"  # never suggested again; a repeat only counts as seen


class SuggestionAction(StrEnum):
    new = "new"  # accepting adds a standing instruction
    supersede = "supersede"  # accepting writes a new version of `target_instruction_id`


class Suggestion(SQLModel, table=True):
    """A preference the user stated in conversation, suggested as a standing
    instruction. `text_key` (the normalised text) is unique among a user's undecided
    and rejected suggestions, so two workers capturing the same statement at once
    cannot both add it: the second's write fails and its retry reinforces instead."""

    __tablename__ = "suggestion"
    __table_args__ = (
        sa.Index("ix_suggestion_scope_status", "tenant_id", "user_id", "status"),
        sa.Index(
            "ux_suggestion_open_text",
            "user_id",
            "text_key",
            unique=True,
            sqlite_where=sa.text("status <> 'accepted'"),
            postgresql_where=sa.text("status <> 'accepted'"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="app_user.id", index=True, ondelete="CASCADE")
    text: str = Field(max_length=1000)
    text_key: str = Field(max_length=200)  # normalised text, clipped (an index key)
    quote: str = Field(max_length=300)
    conversation_id: str | None = Field(default=None, max_length=200)
    capture_id: uuid.UUID | None = None
    confidence: float
    action: SuggestionAction = Field(sa_type=sa.String(16))
    target_instruction_id: uuid.UUID | None = None
    status: SuggestionStatus = Field(sa_type=sa.String(16))
    instruction_id: uuid.UUID | None = None  # the instruction accepting it wrote
    seen_count: int = 1
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    embedding_model: str = Field(max_length=200)
    embedding_dim: int
    text_embedding: bytes = Field(sa_type=sa.LargeBinary)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
