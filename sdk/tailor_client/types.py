"""The shapes of Tailor's answers, as TypedDicts over the JSON the service sends.

TypedDicts rather than classes: a newer server may add fields, and an older client
then passes them through untouched instead of dropping or refusing them. Times are
ISO-8601 strings, ids are strings, exactly as on the wire."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

InstructionStatus = Literal["active", "disabled"]
PreferenceStatus = Literal["suggested", "accepted", "rejected", "promoted"]
InferenceStatus = Literal["pending", "running", "done", "skipped", "failed"]
CaptureStatus = Literal["pending", "running", "done", "failed"]
SuggestionStatus = Literal["pending", "accepted", "rejected"]
Role = Literal["system", "developer", "user", "assistant", "tool"]


class Message(TypedDict, total=False):
    """An OpenAI chat message (what /context and chat take)."""

    role: Role
    content: str | list[dict[str, Any]] | None
    name: str
    tool_call_id: str
    tool_calls: list[dict[str, Any]]


class Health(TypedDict):
    status: str
    index: str | None
    vectors: int | None


class Tenant(TypedDict):
    id: str
    name: str
    created_at: str


class Key(TypedDict):
    id: str
    name: str
    prefix: str
    user_id: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None


class CreatedKey(Key):
    key: str  # the secret: shown only in this answer


class CreatedTenant(TypedDict):
    tenant: Tenant
    api_key: CreatedKey


class User(TypedDict):
    id: str
    created_at: str


class UserPage(TypedDict):
    items: list[User]
    total: int
    limit: int
    offset: int


class _InstructionFields(TypedDict):
    version: int
    text: str
    applies_when: str | None
    always_on: bool
    status: str
    kind: Literal["constraint", "style"] | None
    kind_set_by: Literal["derived", "user"] | None
    domains: list[str] | None
    typical_requests: list[str] | None
    applicability_set_by: Literal["derived", "user"] | None
    seen_count: NotRequired[int]  # times restated in a conversation (servers with capture)
    last_seen_at: NotRequired[str | None]
    capture_id: NotRequired[str | None]  # the capture it was accepted from
    capture_quote: NotRequired[str | None]


class Instruction(_InstructionFields):
    id: str
    source: str
    created_at: str
    updated_at: str


class InstructionVersion(_InstructionFields):
    version_id: str
    valid_from: str
    valid_to: str | None
    superseded_by: str | None


class InstructionPage(TypedDict):
    items: list[Instruction]
    total: int
    limit: int
    offset: int


class InstructionHistory(TypedDict):
    id: str
    versions: list[InstructionVersion]


class Example(TypedDict):
    id: str
    prompt: str
    chosen: str
    rejected: str
    created_at: str


class ExamplePage(TypedDict):
    items: list[Example]
    total: int
    limit: int
    offset: int


class Edit(TypedDict):
    id: str
    context: str
    draft: str
    edited: str
    task: str | None
    distance: float
    inference_status: InferenceStatus
    attempts: int
    last_error: str | None
    preference_id: str | None
    created_at: str
    updated_at: str


class EditPage(TypedDict):
    items: list[Edit]
    total: int
    limit: int
    offset: int


class Preference(TypedDict):
    id: str
    version: int
    text: str
    status: str
    source_edit_id: str | None
    promoted_instruction_id: str | None
    created_at: str
    updated_at: str


class PreferenceVersion(Preference):
    version_id: str
    valid_to: str | None
    superseded_by: str | None


class PreferencePage(TypedDict):
    items: list[Preference]
    total: int
    limit: int
    offset: int


class PreferenceHistory(TypedDict):
    id: str
    versions: list[PreferenceVersion]


class Promoted(TypedDict):
    preference: Preference
    instruction: Instruction


class AppliedInstruction(TypedDict):
    id: str
    version: int
    text: str
    applies_when: str | None
    always_on: bool
    kind: Literal["constraint", "style"] | None
    score: float
    reason: str


class OmittedInstruction(TypedDict):
    id: str
    version: int
    score: float
    reason: Literal["token_budget", "top_k"]


class AppliedExample(TypedDict):
    id: str
    score: float


class AppliedPreference(TypedDict):
    text: str
    preference_ids: list[str]
    edit_ids: list[str]
    aggregated_by_model: bool


class SystemMessage(TypedDict):
    role: Literal["system"]
    content: str


class EmbedderInfo(TypedDict):
    model: str
    dim: int


class Context(TypedDict):
    user_id: str
    instructions: list[AppliedInstruction]
    omitted: list[OmittedInstruction]
    examples: list[AppliedExample]
    inferred_preference: AppliedPreference | None
    system_message: SystemMessage | None
    token_estimate: int
    embedder: EmbedderInfo


class ProfileItemUsed(TypedDict):
    id: str
    kind: Literal["standing_instruction", "preference_example", "inferred_preference"]
    version: int | None
    reason: str
    score: float | None


class TailorInfo(TypedDict):
    user_id: str
    profile_items: list[ProfileItemUsed]


class AssistantMessage(TypedDict):
    role: Literal["assistant"]
    content: str | None


class Choice(TypedDict):
    index: int
    message: AssistantMessage
    finish_reason: str


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    tailor: TailorInfo


class ChunkChoice(TypedDict):
    index: int
    delta: dict[str, Any]
    finish_reason: str | None


class ChatCompletionChunk(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    tailor: NotRequired[TailorInfo]  # on the first chunk
    usage: NotRequired[Usage | None]


class Turn(TypedDict):
    id: str
    at: str
    endpoint: Literal["context", "chat"]
    items: list[ProfileItemUsed]
    message: str | None


class TurnPage(TypedDict):
    items: list[Turn]
    kept: int


class ProfileExport(TypedDict):
    """Every row about a user; hand it back unchanged to `import_user`."""

    format: Literal["tailor-export-v1"]
    exported_at: str
    user: dict[str, Any]
    instructions: list[dict[str, Any]]
    examples: list[dict[str, Any]]
    edits: list[dict[str, Any]]
    preferences: list[dict[str, Any]]
    turns: list[dict[str, Any]]
    audit: list[dict[str, Any]]


class ImportResult(TypedDict):
    instructions: int
    examples: int
    edits: int
    preferences: int
    skipped: int


class Session(TypedDict):
    id: str
    url: str
    token: str
    expires_at: str


class Model(TypedDict):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(TypedDict):
    object: Literal["list"]
    data: list[Model]


class Capture(TypedDict):
    """A submitted conversation; `suggestions` names what it captured once done."""

    id: str
    status: CaptureStatus
    conversation_id: str | None
    suggestions: list[str]
    error: str | None
    created_at: str


class Suggestion(TypedDict):
    id: str
    text: str
    quote: str  # the user's own words
    conversation_id: str | None
    capture_id: str | None
    confidence: float
    action: Literal["new", "supersede"]
    target_instruction_id: str | None  # the instruction a `supersede` one replaces
    status: SuggestionStatus
    seen_count: int
    last_seen_at: str
    created_at: str


class SuggestionList(TypedDict):
    data: list[Suggestion]


class SuggestionAccepted(TypedDict):
    suggestion: Suggestion
    instruction: Instruction
