"""Standing instructions, versioned: an update writes a new row and closes the old
one, a delete closes the current row with status `deleted`. Nothing is destroyed
except by deleting the user."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.changes import record_user_change
from store.clock import utcnow
from store.errors import InvalidInput, NotFound
from store.item_refresh import ItemRows
from store.models import (
    InferredPreference,
    Instruction,
    InstructionKind,
    InstructionSource,
    InstructionStatus,
    PreferenceStatus,
    SetBy,
)
from store.preferences import next_preference_version
from store.scope import UserScope
from store.vector_index import Entry, Vector, decode_vector, pack_meta
from store.versioning import (
    check_expected,
    close_version,
    commit_next_version,
    commit_or_conflict,
    stage_next_version,
)

_NOT_FOUND = "no such instruction"
COLLECTION = "instruction"
ROLE_TEXT = 0
ROLE_CONDITION = 1
ROLE_REQUEST = 2  # one vector per typical request


@dataclass(frozen=True, slots=True)
class Applicability:
    """Where an item applies: its kind and domains, and the typical requests embedded as
    extra keys; each part either derived from the text or set by the user."""

    kind: InstructionKind
    kind_set_by: SetBy
    domains: list[str]
    typical_requests: list[str]
    applicability_set_by: SetBy


@dataclass(frozen=True, slots=True)
class InstructionEmbeddings:
    """Float32 bytes of the text's embedding and, when there is one, the condition's;
    with the applicability derived for the same text and its typical requests' vectors
    (None from a writer that derives nothing: the row keeps what it had)."""

    model: str
    dim: int
    text: bytes
    condition: bytes | None
    applicability: Applicability | None = None
    requests: bytes | None = None


@dataclass(frozen=True, slots=True)
class ActiveInstruction:
    """The fields selection and composition need, keyed by the version row id."""

    row_id: uuid.UUID
    instruction_id: uuid.UUID
    version: int
    text: str
    applies_when: str | None
    always_on: bool
    kind: InstructionKind | None = None  # None: written before kinds existed (unknown)
    domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InstructionChanges:
    """Fields an update may set; None means unchanged (applies_when is cleared with "").
    Setting kind, domains or typical requests pins them (set by the user); the
    `rederive_*` flags hand them back to derivation."""

    text: str | None = None
    applies_when: str | None = None
    always_on: bool | None = None
    status: InstructionStatus | None = None
    kind: InstructionKind | None = None
    rederive_kind: bool = False
    domains: list[str] | None = None
    typical_requests: list[str] | None = None
    rederive_applicability: bool = False

    @classmethod
    def restoring(cls, version: Instruction) -> InstructionChanges:
        """The changes that make the next version equal `version` again: its text,
        condition and always-on, and what the user had pinned (kind, domains, typical
        requests); what was derived then is derived again for the same text now.
        The status stays as it is: restoring wording does not switch an item on."""
        user = SetBy.user
        pinned_kind = version.kind is not None and version.kind_set_by == user
        pinned_where = version.applicability_set_by == user
        return cls(
            text=version.text,
            applies_when=version.applies_when or "",
            always_on=version.always_on,
            kind=version.kind if pinned_kind else None,
            rederive_kind=not pinned_kind,
            domains=list(version.domains or []) if pinned_where else None,
            typical_requests=list(version.typical_requests or []) if pinned_where else None,
            rederive_applicability=not pinned_where,
        )

    @property
    def rekeys(self) -> bool:
        """Whether the new version needs its keys (vectors, applicability) recomputed."""
        return (
            self.text is not None
            or self.applies_when is not None
            or self.kind is not None
            or self.rederive_kind
            or self.domains is not None
            or self.typical_requests is not None
            or self.rederive_applicability
        )


def _in_scope(scope: UserScope) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]:
    return (
        col(Instruction.tenant_id) == scope.tenant_id,
        col(Instruction.user_id) == scope.user_id,
    )


def _scope_without_index(scope: UserScope, dialect: str) -> list[sa.ColumnElement[bool]]:
    """The scope, written so SQLite's planner does not pick the scope index for a fetch
    by primary keys: without statistics it would scan a large profile's rows instead of
    looking up the few ids (PostgreSQL plans this from its statistics)."""
    if dialect != "sqlite":
        return list(_in_scope(scope))
    return [
        sa.func.coalesce(col(Instruction.tenant_id), col(Instruction.tenant_id)) == scope.tenant_id,
        sa.func.coalesce(col(Instruction.user_id), col(Instruction.user_id)) == scope.user_id,
    ]


def _current(instruction_id: uuid.UUID) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        col(Instruction.instruction_id) == instruction_id,
        col(Instruction.valid_to).is_(None),
        col(Instruction.status) != InstructionStatus.deleted,
    )


def row_vectors(
    dim: int, text: bytes, condition: bytes | None, requests: bytes | None = None
) -> list[tuple[int, Vector]]:
    """The (role, vector) pairs an instruction row contributes to the cache."""
    vectors = [(ROLE_TEXT, decode_vector(text, dim))]
    if condition is not None:
        vectors.append((ROLE_CONDITION, decode_vector(condition, dim)))
    if requests:
        width = dim * 4
        for start in range(0, len(requests), width):
            vectors.append((ROLE_REQUEST, decode_vector(requests[start : start + width], dim)))
    return vectors


def set_applicability(
    row: Instruction, embeddings: InstructionEmbeddings | None, old: Instruction | None
) -> Instruction:
    """The new version's applicability: what the writer derived for its text, else what
    the previous version had (a change of status or always_on keeps it)."""
    derived = embeddings.applicability if embeddings else None
    if derived is not None:
        row.kind = derived.kind
        row.kind_set_by = derived.kind_set_by
        row.domains = list(derived.domains)
        row.typical_requests = list(derived.typical_requests)
        row.applicability_set_by = derived.applicability_set_by
        row.request_embeddings = embeddings.requests if embeddings else None
    elif old is not None:
        row.kind = old.kind
        row.kind_set_by = old.kind_set_by
        row.domains = old.domains
        row.typical_requests = old.typical_requests
        row.applicability_set_by = old.applicability_set_by
        row.request_embeddings = old.request_embeddings
    return row


def _active(
    row_id: uuid.UUID,
    instruction_id: uuid.UUID,
    version: int,
    text: str,
    applies_when: str | None,
    always_on: bool,
    kind: str | None,
    domains: list[str] | None,
) -> ActiveInstruction:
    return ActiveInstruction(
        row_id,
        instruction_id,
        version,
        text,
        applies_when,
        always_on,
        kind=InstructionKind(kind) if kind else None,
        domains=tuple(domains or ()),
    )


def _current_row(session: Session, scope: UserScope, instruction_id: uuid.UUID) -> Instruction:
    row = session.exec(
        select(Instruction).where(*_in_scope(scope), *_current(instruction_id))
    ).first()
    if row is None:
        raise NotFound(_NOT_FOUND, code="instruction_not_found")
    return row


class InstructionRepository:
    def __init__(self, engine: Engine, domain_order: Sequence[str] = ()) -> None:
        """`domain_order` numbers the domains packed into each cached row's meta
        (store/vector_index.py, `pack_meta`), so a turn ranks a whole profile in numpy."""
        self._engine = engine
        self.domain_order = tuple(domain_order)

    def meta(self, always_on: bool, kind: str | None, domains: Sequence[str] | None) -> int:
        constraint = kind == InstructionKind.constraint
        return pack_meta(always_on, constraint, domains or (), self.domain_order)

    def create(
        self,
        scope: UserScope,
        *,
        text: str,
        applies_when: str | None,
        always_on: bool,
        source: InstructionSource,
        embeddings: InstructionEmbeddings,
    ) -> Instruction:
        with Session(self._engine, expire_on_commit=False) as session:
            row = first_version(scope, text, applies_when, always_on, source, embeddings)
            session.add(row)
            record_user_change(session, scope, "instruction", row.instruction_id, "created", 1)
            session.commit()
            return row

    def promote(
        self,
        scope: UserScope,
        preference: InferredPreference,
        *,
        applies_when: str | None,
        always_on: bool,
        embeddings: InstructionEmbeddings,
    ) -> tuple[InferredPreference, Instruction]:
        """Create the instruction and mark the preference promoted in one transaction.

        `preference` is the version the caller read (and embedded the text of). Closing
        it is conditional, and the instruction row names the preference it came from
        under a unique index, so of several promotes racing on one preference exactly
        one commits; the others get 409 `concurrent_update` and write nothing."""
        if preference.status in (PreferenceStatus.promoted, PreferenceStatus.rejected):
            raise InvalidInput(
                f"a {preference.status} preference cannot be promoted",
                code="preference_not_promotable",
            )
        if preference.promoted_instruction_id is not None:
            raise InvalidInput(
                "this preference was promoted before (to instruction "
                f"{preference.promoted_instruction_id}); it is promoted once",
                code="preference_not_promotable",
            )
        now = utcnow()
        with Session(self._engine, expire_on_commit=False) as session:
            row = first_version(
                scope,
                preference.text,
                applies_when,
                always_on,
                InstructionSource.inferred,
                embeddings,
            )
            row.promoted_from = preference.preference_id
            promoted = next_preference_version(
                scope,
                preference,
                now=now,
                status=PreferenceStatus.promoted,
                promoted_instruction_id=row.instruction_id,
            )
            stage_next_version(
                session,
                scope,
                preference,
                promoted,
                entity="preference",
                item_id=preference.preference_id,
                now=now,
            )
            session.add(row)
            record_user_change(session, scope, "instruction", row.instruction_id, "created", 1)
            commit_or_conflict(session, "preference")
            return promoted, row

    def get(self, scope: UserScope, instruction_id: uuid.UUID) -> Instruction:
        with Session(self._engine) as session:
            return _current_row(session, scope, instruction_id)

    def page(
        self,
        scope: UserScope,
        *,
        status: InstructionStatus | None,
        limit: int,
        offset: int,
    ) -> tuple[list[Instruction], int]:
        conditions = [*_in_scope(scope), col(Instruction.valid_to).is_(None)]
        if status is None:
            conditions.append(col(Instruction.status) != InstructionStatus.deleted)
        else:
            conditions.append(col(Instruction.status) == status)
        with Session(self._engine) as session:
            total = session.exec(
                select(sa.func.count()).select_from(Instruction).where(*conditions)
            ).one()
            rows = session.exec(
                select(Instruction)
                .where(*conditions)
                .order_by(col(Instruction.created_at), col(Instruction.instruction_id))
                .offset(offset)
                .limit(limit)
            ).all()
            return list(rows), int(total)

    def active(
        self,
        scope: UserScope,
        *,
        row_ids: Sequence[uuid.UUID] | None = None,
        always_on: bool | None = None,
    ) -> list[ActiveInstruction]:
        """The instructions that can apply to a turn, oldest first, without embeddings
        (the vectors are in the cache): all of them, or only these version rows (a large
        profile's top candidates), or only the always-on (or only the conditional) ones."""
        conditions = [
            *_in_scope(scope),
            col(Instruction.valid_to).is_(None),
            col(Instruction.status) == InstructionStatus.active,
        ]
        if row_ids is not None:
            conditions = [col(Instruction.id).in_(list(row_ids)), *conditions[2:]]
            conditions += _scope_without_index(scope, self._engine.dialect.name)
        if always_on is not None:
            conditions.append(col(Instruction.always_on) == always_on)
        with Session(self._engine) as session:
            rows = session.execute(
                sa.select(
                    col(Instruction.id),
                    col(Instruction.instruction_id),
                    col(Instruction.version),
                    col(Instruction.text),
                    col(Instruction.applies_when),
                    col(Instruction.always_on),
                    col(Instruction.kind),
                    col(Instruction.domains),
                )
                .where(*conditions)
                .order_by(col(Instruction.created_at), col(Instruction.instruction_id))
            ).all()
            return [_active(*row) for row in rows]

    def current_texts(self, scope: UserScope) -> list[tuple[uuid.UUID, str, str, int, bytes]]:
        """(instruction id, text, embedding model, dim, text vector) of every active
        item: what a captured statement is compared with."""
        with Session(self._engine) as session:
            rows = session.execute(
                sa.select(
                    col(Instruction.instruction_id),
                    col(Instruction.text),
                    col(Instruction.embedding_model),
                    col(Instruction.embedding_dim),
                    col(Instruction.text_embedding),
                ).where(
                    *_in_scope(scope),
                    col(Instruction.valid_to).is_(None),
                    col(Instruction.status) == InstructionStatus.active,
                )
            ).tuples()
            return list(rows)

    def update(
        self,
        scope: UserScope,
        read: Instruction,
        changes: InstructionChanges,
        embeddings: InstructionEmbeddings | None,
        *,
        expected: Collection[int] | None = None,
    ) -> tuple[Instruction, Instruction]:
        """Write the next version on top of `read`, the current version the caller read
        (and embedded the text of, outside this transaction); returns (old, new).

        Nothing is read again here: the new row is `read` plus `changes`, and `read` is
        closed only if it is still current, so the vectors stored always belong to the
        text stored. `expected` (from If-Match) are the versions the client accepts."""
        if read.tenant_id != scope.tenant_id or read.user_id != scope.user_id:
            raise NotFound(_NOT_FOUND, code="instruction_not_found")
        check_expected("instruction", read, expected)
        now = utcnow()
        with Session(self._engine, expire_on_commit=False) as session:
            new = next_version_row(scope, read, changes, embeddings, now)
            commit_next_version(
                session,
                scope,
                read,
                new,
                entity="instruction",
                item_id=read.instruction_id,
                now=now,
            )
            return read, new

    def delete(
        self,
        scope: UserScope,
        instruction_id: uuid.UUID,
        *,
        expected: Collection[int] | None = None,
    ) -> Instruction:
        """Close the current version as deleted, if it is still the one read here: a
        delete racing an update either lands on the version that update left (and the
        update's own close fails), or fails itself; never both acknowledged."""
        with Session(self._engine, expire_on_commit=False) as session:
            row = _current_row(session, scope, instruction_id)
            check_expected("instruction", row, expected)
            close_version(
                session, row, entity="instruction", now=utcnow(), status=InstructionStatus.deleted
            )
            record_user_change(
                session, scope, "instruction", instruction_id, "deleted", row.version
            )
            session.commit()
            return row

    def version(self, scope: UserScope, instruction_id: uuid.UUID, version: int) -> Instruction:
        """One stored version (current, earlier or deleted) of an item in scope."""
        with Session(self._engine) as session:
            row = session.exec(
                select(Instruction).where(
                    *_in_scope(scope),
                    col(Instruction.instruction_id) == instruction_id,
                    col(Instruction.version) == version,
                )
            ).first()
            if row is None:
                raise NotFound(
                    f"instruction {instruction_id} has no version {version}",
                    code="instruction_version_not_found",
                )
            return row

    def history(self, scope: UserScope, instruction_id: uuid.UUID) -> list[Instruction]:
        with Session(self._engine) as session:
            rows = session.exec(
                select(Instruction)
                .where(*_in_scope(scope), col(Instruction.instruction_id) == instruction_id)
                .order_by(col(Instruction.version))
            ).all()
            if not rows:
                raise NotFound(_NOT_FOUND, code="instruction_not_found")
            return list(rows)

    # -- index maintenance (system level: no request reaches these) -----------------

    collection = COLLECTION

    def entries(
        self,
        user_ids: set[uuid.UUID] | None,
        *,
        model: str,
        item_ids: set[uuid.UUID] | None = None,
    ) -> Iterator[Entry]:
        """Vectors of every active row (of the given users, of the given instructions)
        embedded by `model`."""
        query = sa.select(
            col(Instruction.user_id),
            col(Instruction.id),
            col(Instruction.embedding_dim),
            col(Instruction.text_embedding),
            col(Instruction.condition_embedding),
            col(Instruction.request_embeddings),
            col(Instruction.always_on),
            col(Instruction.kind),
            col(Instruction.domains),
        ).where(*_active_with(model))
        if user_ids is not None:
            query = query.where(col(Instruction.user_id).in_(user_ids))
        if item_ids is not None:
            query = query.where(col(Instruction.instruction_id).in_(item_ids))
        with Session(self._engine) as session:
            for row in session.execute(query):
                user_id, row_id, dim, text, condition, requests, always, kind, domains = row
                meta = self.meta(always, kind, domains)
                for role, vector in row_vectors(dim, text, condition, requests):
                    yield Entry(user_id, COLLECTION, row_id, role, vector, meta)

    def count_rows(self, *, model: str) -> int:
        with Session(self._engine) as session:
            value = session.exec(
                select(sa.func.count()).select_from(Instruction).where(*_active_with(model))
            ).one()
            return int(value)

    def row_ids(self, *, model: str) -> Iterator[tuple[uuid.UUID, uuid.UUID]]:
        """(user, row) of every row `entries` would yield, without the vectors: what a
        loaded snapshot is checked against (an edit keeps the count, not the ids)."""
        query = sa.select(col(Instruction.user_id), col(Instruction.id)).where(*_active_with(model))
        with Session(self._engine) as session:
            yield from session.execute(query).tuples()

    item_entity = "instruction"  # the change-log entity whose ids item_rows reads

    def item_rows(self, user_id: uuid.UUID, item_ids: set[uuid.UUID], *, model: str) -> ItemRows:
        """Every version row of these instructions (to drop from the cache) and the
        vectors of the active ones (to put): one user's changed items, not the user."""
        with Session(self._engine) as session:
            stale = session.execute(
                sa.select(col(Instruction.id)).where(
                    col(Instruction.user_id) == user_id,
                    col(Instruction.instruction_id).in_(item_ids),
                )
            ).scalars()
            stale_ids = list(stale)
        return ItemRows(stale_ids, list(self.entries({user_id}, model=model, item_ids=item_ids)))


def next_version_row(
    scope: UserScope,
    read: Instruction,
    changes: InstructionChanges,
    embeddings: InstructionEmbeddings | None,
    now: datetime,
) -> Instruction:
    """The version after `read`: `read` plus `changes`, keyed by `embeddings` (None:
    the text and condition are unchanged, so are their keys). How often the user
    restated it and where it was captured from carry over."""
    new = Instruction(
        instruction_id=read.instruction_id,
        version=read.version + 1,
        tenant_id=read.tenant_id,
        user_id=read.user_id,
        text=changes.text if changes.text is not None else read.text,
        applies_when=(
            read.applies_when if changes.applies_when is None else (changes.applies_when or None)
        ),
        always_on=read.always_on if changes.always_on is None else changes.always_on,
        status=read.status if changes.status is None else changes.status,
        source=read.source,
        promoted_from=read.promoted_from,
        created_by_key=scope.key_id,
        embedding_model=embeddings.model if embeddings else read.embedding_model,
        embedding_dim=embeddings.dim if embeddings else read.embedding_dim,
        text_embedding=embeddings.text if embeddings else read.text_embedding,
        condition_embedding=(embeddings.condition if embeddings else read.condition_embedding),
        created_at=read.created_at,
        valid_from=now,
        seen_count=read.seen_count,
        last_seen_at=read.last_seen_at,
        capture_id=read.capture_id,
        capture_quote=read.capture_quote,
    )
    return set_applicability(new, embeddings, read)


def first_version(
    scope: UserScope,
    text: str,
    applies_when: str | None,
    always_on: bool,
    source: InstructionSource,
    embeddings: InstructionEmbeddings,
) -> Instruction:
    row = Instruction(
        instruction_id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        user_id=scope.user_id,
        text=text,
        applies_when=applies_when,
        always_on=always_on,
        source=source,
        created_by_key=scope.key_id,
        embedding_model=embeddings.model,
        embedding_dim=embeddings.dim,
        text_embedding=embeddings.text,
        condition_embedding=embeddings.condition,
    )
    return set_applicability(row, embeddings, None)


def _active_with(model: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        col(Instruction.valid_to).is_(None),
        col(Instruction.status) == InstructionStatus.active,
        col(Instruction.embedding_model) == model,
    )
