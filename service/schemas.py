"""Request and response bodies. Requests forbid unknown fields; every bound (lengths,
counts, ranges) is declared here so it also appears in the OpenAPI document."""

from __future__ import annotations

import typing
import uuid
from datetime import UTC, datetime
from functools import cache, partial
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from personalization.domains import DOMAINS
from personalization.text import clean_name, clean_profile_text, find_nul
from service.deps import USER_ID_PATTERN

# Profile text must contain a visible character; the cleaners also reject zero-width,
# bidi and control characters, which JSON Schema cannot express.
VISIBLE = r"\S"
MAX_INSTRUCTION_CHARS = 1000
MAX_CONDITION_CHARS = 500
MAX_MESSAGES = 1000  # a long chat (PrefEval goes to 300 turns); the body limit still bounds it
MAX_MESSAGE_CHARS = 32_000
MAX_EXAMPLE_PROMPT_CHARS = 8000
MAX_EXAMPLE_ANSWER_CHARS = 16_000
MAX_TYPICAL_REQUESTS = 8
MAX_TYPICAL_REQUEST_CHARS = 300


def _text(max_chars: int, **field: Any) -> Any:
    """Schema bounds for profile text: the bound declared is the bound enforced, on the
    text as sent (surrounding spaces count), and again after NFC normalization."""
    return Field(min_length=1, max_length=max_chars, pattern=VISIBLE, **field)


def _cleaned(max_chars: int) -> AfterValidator:
    return AfterValidator(partial(clean_profile_text, max_chars=max_chars))


def _condition_or_clear(value: str) -> str:
    return "" if not value.strip() else clean_profile_text(value, max_chars=MAX_CONDITION_CHARS)


InstructionText = Annotated[
    str,
    _text(MAX_INSTRUCTION_CHARS, examples=["Format plans as bullet points."]),
    _cleaned(MAX_INSTRUCTION_CHARS),
]
ConditionText = Annotated[
    str,
    _text(MAX_CONDITION_CHARS, examples=["when I ask for a plan or itinerary"]),
    _cleaned(MAX_CONDITION_CHARS),
]


def _known_domain(value: str) -> str:
    if value not in DOMAINS:
        raise ValueError(f"unknown domain {value!r}; known: {', '.join(DOMAINS)}")
    return value


DomainTag = Annotated[
    str,
    Field(max_length=32, json_schema_extra={"enum": list(DOMAINS)}),
    AfterValidator(_known_domain),
]
Domains = Annotated[list[DomainTag], Field(max_length=len(DOMAINS))]
TypicalRequests = Annotated[
    list[
        Annotated[
            str,
            _text(MAX_TYPICAL_REQUEST_CHARS),
            _cleaned(MAX_TYPICAL_REQUEST_CHARS),
        ]
    ],
    Field(max_length=MAX_TYPICAL_REQUESTS),
]


class _RejectsNul(BaseModel):
    """One check for every request body: no string anywhere in it (keys, nested
    objects, free-form fields such as tool calls) may hold NUL. PostgreSQL cannot store
    it, and SQLite must not accept what PostgreSQL refuses."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        where = find_nul(data)
        if where is not None:
            raise ValueError(f"{where} contains a NUL character (U+0000)")
        return data


@cache
def _integer_fields(model: type[BaseModel]) -> frozenset[str]:
    names = set()
    for name, field in model.model_fields.items():
        kinds = typing.get_args(field.annotation) or (field.annotation,)
        if int in kinds:
            names |= {name, field.alias or name}
    return frozenset(names)


class Request(_RejectsNul):
    # Strict, like the chat request: a JSON body's types are the schema's. `"top_k": "5"`
    # or `"cipher_k": false` is a mistake to name (422), not to coerce (the schema fuzz
    # test sends exactly these). JSON Schema's "integer" includes 50.0, so such a number
    # is taken as the integer it is; 50.5 is not.
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _integral_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        integers = _integer_fields(cls)
        return {
            k: int(v) if k in integers and type(v) is float and v.is_integer() else v
            for k, v in data.items()
        }


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


# --- tenants and keys --------------------------------------------------------------


def _name(max_chars: int) -> AfterValidator:
    return AfterValidator(partial(clean_name, max_chars=max_chars))


class TenantCreate(Request):
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=VISIBLE), _name(200)] = Field(
        examples=["acme-notes"]
    )


class TenantPublic(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime


class KeyCreate(Request):
    name: Annotated[str, Field(max_length=200), _name(200)] = Field("", examples=["ios-app alice"])
    user_id: str | None = Field(
        None,
        pattern=USER_ID_PATTERN,
        max_length=128,
        description="bind the key to this end user: it can then touch only that profile",
    )
    expires_at: datetime | None = Field(  # an ISO-8601 string in JSON: parsed, not strict
        None, strict=False, description="aware ISO-8601 time; none = no expiry"
    )

    @field_validator("expires_at")
    @classmethod
    def _in_utc_range(cls, value: datetime | None) -> datetime | None:
        """Stored in UTC: a time whose UTC form leaves years 1..9999 (0001-01-01 at
        +14:00, 9999-12-31 at -05:00) cannot be stored anywhere."""
        if value is None or value.tzinfo is None:
            return value  # naive: the route answers naive_datetime
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range once converted to UTC") from None


class KeyPublic(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="the key's first characters, to recognise it")
    user_id: str | None = Field(description="end user the key is bound to, if any")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="the secret; shown only in this response")


class TenantCreated(BaseModel):
    tenant: TenantPublic
    api_key: KeyCreated


# --- users ---------------------------------------------------------------------------


class UserCreate(Request):
    id: str = Field(pattern=USER_ID_PATTERN, max_length=128, examples=["user-42"])


class UserPublic(BaseModel):
    id: str = Field(description="the app's id for the end user")
    created_at: datetime


class UserList(BaseModel):
    items: list[UserPublic]
    total: int
    limit: int
    offset: int


# --- standing instructions ------------------------------------------------------------


class InstructionCreate(Request):
    text: InstructionText
    applies_when: ConditionText | None = Field(
        None, description="the situation it applies to; omit for an always-on or general one"
    )
    always_on: bool = Field(False, description="apply to every turn, whatever it is about")
    source: Literal["user", "app"] = Field(
        "app", description="who stated it: the end user, or the app on their behalf"
    )


class InstructionUpdate(Request):
    text: InstructionText | None = None
    applies_when: (
        Annotated[
            str,
            Field(max_length=MAX_CONDITION_CHARS),
            AfterValidator(_condition_or_clear),
        ]
        | None
    ) = Field(None, description='new condition; "" removes it')
    always_on: bool | None = None
    status: Literal["active", "disabled"] | None = None
    kind: Literal["constraint", "style", "auto"] | None = Field(
        None, description='pin the kind; "auto" hands it back to derivation from the text'
    )
    domains: Domains | Literal["auto"] | None = Field(
        None,
        description="pin the domains it applies in (kept across text changes); "
        '"auto" re-derives domains and typical requests',
    )
    typical_requests: TypicalRequests | Literal["auto"] | None = Field(
        None,
        description="pin requests it applies to, embedded as extra keys; "
        '"auto" re-derives domains and typical requests',
    )


class InstructionRestore(Request):
    version: int = Field(
        ge=1,
        le=2_147_483_647,
        description="the earlier version to bring back (see the item's history)",
        examples=[1],
    )


class _InstructionFields(BaseModel):
    """Read from a store row (attribute names given as validation aliases)."""

    model_config = ConfigDict(from_attributes=True)

    version: int
    text: str
    applies_when: str | None
    always_on: bool
    status: str
    kind: Literal["constraint", "style"] | None = Field(
        description="constraint (a miss is a harm: applies across its domains) or style; "
        "null for an item written before kinds existed"
    )
    kind_set_by: Literal["derived", "user"] | None
    domains: list[str] | None = Field(description="domains it applies in")
    typical_requests: list[str] | None = Field(
        description="requests it applies to, matched against each turn as extra keys"
    )
    applicability_set_by: Literal["derived", "user"] | None = Field(
        description="derived: domains and typical requests follow the text; user: kept"
    )
    seen_count: int = Field(0, description="times the user restated it in a conversation")
    last_seen_at: datetime | None = Field(None, description="when the user last restated it")
    capture_id: uuid.UUID | None = Field(
        None, description="the conversation capture it was accepted from (source conversation)"
    )
    capture_quote: str | None = Field(None, description="the user's words it was captured from")


class InstructionPublic(_InstructionFields):
    id: uuid.UUID = Field(validation_alias="instruction_id")
    source: str
    created_at: datetime
    updated_at: datetime = Field(validation_alias="valid_from")


class InstructionVersion(_InstructionFields):
    version_id: uuid.UUID = Field(validation_alias="id")
    valid_from: datetime
    valid_to: datetime | None
    superseded_by: uuid.UUID | None


class InstructionList(BaseModel):
    items: list[InstructionPublic]
    total: int
    limit: int
    offset: int


class InstructionHistory(BaseModel):
    id: uuid.UUID
    versions: list[InstructionVersion]


# --- few-shot preference examples -------------------------------------------------------

ExamplePrompt = Annotated[
    str,
    _text(MAX_EXAMPLE_PROMPT_CHARS),
    _cleaned(MAX_EXAMPLE_PROMPT_CHARS),
]
ExampleAnswer = Annotated[
    str,
    _text(MAX_EXAMPLE_ANSWER_CHARS),
    _cleaned(MAX_EXAMPLE_ANSWER_CHARS),
]


class ExampleCreate(Request):
    prompt: ExamplePrompt = Field(examples=["Summarise this article for me."])
    chosen: ExampleAnswer = Field(examples=["- Point one\n- Point two"])
    rejected: ExampleAnswer = Field(examples=["The article, which was published in..."])


class ExamplePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    prompt: str
    chosen: str
    rejected: str
    created_at: datetime


class ExampleList(BaseModel):
    items: list[ExamplePublic]
    total: int
    limit: int
    offset: int


# --- edits and inferred preferences (CIPHER) -----------------------------------------------

MAX_EDIT_CONTEXT_CHARS = 8000
MAX_EDIT_TEXT_CHARS = 16_000
MAX_PREFERENCE_CHARS = 1000


EditContext = Annotated[
    str,
    _text(MAX_EDIT_CONTEXT_CHARS),
    _cleaned(MAX_EDIT_CONTEXT_CHARS),
]
EditText = Annotated[
    str,
    _text(MAX_EDIT_TEXT_CHARS),
    _cleaned(MAX_EDIT_TEXT_CHARS),
]
PreferenceText = Annotated[
    str,
    _text(MAX_PREFERENCE_CHARS),
    _cleaned(MAX_PREFERENCE_CHARS),
]


class EditCreate(Request):
    context: EditContext = Field(
        description="what the draft answered (the user's request)",
        examples=["Write a note to the team that the meeting moved to Thursday."],
    )
    draft: EditText = Field(examples=["Dear team, I wanted to let you know that..."])
    edited: EditText = Field(
        description="the draft as the user left it", examples=["Meeting moved to Thu."]
    )
    task: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    applied_preference: PreferenceText | None = Field(
        None,
        description="the inferred preference that conditioned the draft (from /context); "
        "kept as accepted when the user did not edit",
    )


class PreferencePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(validation_alias="preference_id")
    version: int
    text: str
    status: str
    source_edit_id: uuid.UUID | None
    promoted_instruction_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime = Field(validation_alias="valid_from")


class PreferenceVersion(PreferencePublic):
    version_id: uuid.UUID = Field(validation_alias="id")
    valid_to: datetime | None
    superseded_by: uuid.UUID | None


class PreferenceList(BaseModel):
    items: list[PreferencePublic]
    total: int
    limit: int
    offset: int


class PreferenceHistory(BaseModel):
    id: uuid.UUID
    versions: list[PreferenceVersion]


class PreferenceUpdate(Request):
    text: PreferenceText | None = None
    status: Literal["suggested", "accepted", "rejected"] | None = None


class PreferencePromote(Request):
    applies_when: ConditionText | None = None
    always_on: bool = False


class PreferencePromoted(BaseModel):
    preference: PreferencePublic
    instruction: InstructionPublic


class EditPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    context: str
    draft: str
    edited: str
    task: str | None
    distance: float = Field(description="normalized word edit distance, 0..1")
    inference_status: Literal["pending", "running", "done", "skipped", "failed"]
    attempts: int
    last_error: str | None
    preference_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class EditList(BaseModel):
    items: list[EditPublic]
    total: int
    limit: int
    offset: int


# --- per-turn context -------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(max_length=64)
    text: str | None = Field(None, max_length=MAX_MESSAGE_CHARS)


class ChatMessageIn(BaseModel):
    """An OpenAI chat message; only text content is read."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: (
        Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]
        | Annotated[list[ContentPart], Field(max_length=64)]
        | None
    ) = None
    name: str | None = Field(None, max_length=128)
    tool_call_id: str | None = Field(None, max_length=128)
    tool_calls: list[dict[str, Any]] | None = Field(None, max_length=64)
    refusal: str | None = Field(None, max_length=MAX_MESSAGE_CHARS)
    function_call: dict[str, Any] | None = Field(None, description="deprecated by OpenAI")
    audio: dict[str, Any] | None = Field(None, description="a previous audio answer's id")

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content if part.text)


class ContextRequest(Request):
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=MAX_MESSAGES)
    top_k: int | None = Field(
        None, ge=1, le=50, description="per-turn cap on conditional instructions"
    )
    threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="relevance floor once the profile does not fit whole (see settings)",
    )
    whole_profile: bool | None = Field(
        None,
        description="let a profile within the cap go in whole (by rank as far as the budget "
        "holds), with no relevance floor",
    )
    token_budget: int | None = Field(None, ge=16, le=8000, description="approx tokens of profile")
    examples_k: int | None = Field(None, ge=0, le=10, description="nearest preference examples")
    cipher_k: int | None = Field(None, ge=0, le=20, description="nearest past edits (CIPHER)")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"messages": [{"role": "user", "content": "Plan a 3-day trip to Rome for me."}]}
            ]
        },
    )


class AppliedInstruction(BaseModel):
    id: uuid.UUID
    version: int
    text: str
    applies_when: str | None
    always_on: bool
    kind: Literal["constraint", "style"] | None
    score: float = Field(
        description="1.0 for always-on; else its rank: best cosine of its keys to the turn "
        "plus its domain bonuses"
    )
    reason: Literal[
        "always_on",
        "constraint_domain",
        "matched_condition",
        "matched_request",
        "matched_text",
        "whole_profile",
    ]


class OmittedInstruction(BaseModel):
    id: uuid.UUID
    version: int
    score: float
    reason: Literal["token_budget", "top_k"]


class AppliedExample(BaseModel):
    id: uuid.UUID
    score: float = Field(description="cosine of its prompt to the turn")


class AppliedPreference(BaseModel):
    text: str = Field(description="aggregated from the preferences of the nearest past edits")
    preference_ids: list[uuid.UUID]
    edit_ids: list[uuid.UUID]
    aggregated_by_model: bool


class SystemMessage(BaseModel):
    role: Literal["system"] = "system"
    content: str


class EmbedderInfo(BaseModel):
    model: str
    dim: int


class ContextResponse(BaseModel):
    user_id: str
    instructions: list[AppliedInstruction]
    omitted: list[OmittedInstruction]
    examples: list[AppliedExample]
    inferred_preference: AppliedPreference | None
    system_message: SystemMessage | None = Field(
        description="add after the app's own system prompt; null when nothing applies"
    )
    token_estimate: int
    embedder: EmbedderInfo


class Health(BaseModel):
    status: str
    index: str | None = None
    vectors: int | None = None
    model: str | None = Field(
        None, description="chat model: loaded, loading (eager load running) or lazy (on first use)"
    )


# --- OpenAI-compatible chat -------------------------------------------------------------


MAX_TOOLS = 128
JsonObject = Annotated[dict[str, Any], Field(max_length=64)]


class ChatCompletionRequest(Request):
    """The OpenAI chat request. Every documented OpenAI field is accepted: with an
    OpenAI-compatible backend the fields Tailor does not use itself are forwarded
    unchanged (`user` excepted: it names the end user to Tailor and stays here); the
    embedded model honours what it can and answers 422 `unsupported_parameter` for the
    rest. `n` must be 1."""

    model: str | None = Field(None, max_length=200, description="echoed; the backend decides")
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=MAX_MESSAGES)
    user: str | None = Field(
        None, pattern=USER_ID_PATTERN, description="end user; optional with a user-bound key"
    )
    stream: bool = False
    stream_options: JsonObject | None = Field(
        None, description='`{"include_usage": true}` ends the stream with a usage chunk'
    )
    max_tokens: int | None = Field(None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: (
        Annotated[str, Field(max_length=200)] | list[Annotated[str, Field(max_length=200)]] | None
    ) = Field(None, max_length=4)
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    tools: list[JsonObject] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | JsonObject | None = None
    parallel_tool_calls: bool | None = None
    response_format: JsonObject | None = Field(
        None, description="`text`, `json_object` or `json_schema` (with `json_schema.schema`)"
    )
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    logit_bias: dict[str, float] | None = Field(None, max_length=300)
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(None, max_length=16)
    store: bool | None = None
    functions: list[JsonObject] | None = Field(
        None, max_length=MAX_TOOLS, description="deprecated by OpenAI"
    )
    function_call: str | JsonObject | None = Field(
        None, max_length=64, description="deprecated by OpenAI"
    )
    modalities: list[Annotated[str, Field(max_length=32)]] | None = Field(None, max_length=4)
    audio: JsonObject | None = None
    prediction: JsonObject | None = None
    reasoning_effort: str | None = Field(None, max_length=32)
    verbosity: str | None = Field(None, max_length=32)
    service_tier: str | None = Field(None, max_length=32)
    web_search_options: JsonObject | None = None
    safety_identifier: str | None = Field(None, max_length=256)
    prompt_cache_key: str | None = Field(None, max_length=256)
    prompt_cache_retention: str | None = Field(None, max_length=32)
    prompt_cache_options: JsonObject | None = None
    moderation: JsonObject | None = None

    def passthrough(self) -> dict[str, Any]:
        """The fields the app set that Tailor does not consume itself, exactly as sent."""
        sent = self.model_dump(mode="json", exclude_unset=True, exclude_none=True)
        return {k: v for k, v in sent.items() if k not in _CONSUMED}

    # Strict: OpenAI's clients send JSON types; `"store": 0` or `"seed": "5"` is a
    # mistake to name, not to coerce (the declared schema says so too).
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "tailor",
                    "user": "user-42",
                    "messages": [
                        {"role": "system", "content": "You are a helpful travel assistant."},
                        {"role": "user", "content": "Plan a day in Rome."},
                    ],
                }
            ]
        },
    )


# Read by Tailor itself, never forwarded: the messages go out with the profile block,
# the backend names its own model, `user` is the end user's id in this app.
_CONSUMED = frozenset({"model", "messages", "user", "stream", "n"})


class ProfileItemUsed(BaseModel):
    id: uuid.UUID
    kind: Literal["standing_instruction", "preference_example", "inferred_preference"]
    version: int | None = Field(description="null for an aggregated inferred preference")
    reason: str
    score: float | None = Field(description="null where no similarity applies")


class TurnPublic(BaseModel):
    """One recent turn: when, through which endpoint, and the profile items it used."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    at: datetime
    endpoint: Literal["context", "chat"]
    items: list[ProfileItemUsed]
    message: str | None = Field(
        description="the turn's last user message, clipped; null unless the operator "
        "turned on TAILOR_TURNS_KEEP_MESSAGE"
    )


class TurnList(BaseModel):
    items: list[TurnPublic]
    kept: int = Field(description="how many recent turns the server keeps per user")


class TailorInfo(BaseModel):
    """Which profile items conditioned this answer, and why."""

    user_id: str
    profile_items: list[ProfileItemUsed]


class AssistantMessage(BaseModel):
    """The model's message as its server sent it: other members (`audio`,
    `annotations`, ...) come back too."""

    model_config = ConfigDict(extra="allow")

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: dict[str, Any] | None = None
    finish_reason: str


class Usage(BaseModel):
    """Token details the server reports (`prompt_tokens_details`, ...) come back too."""

    model_config = ConfigDict(extra="allow")

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ModelPublic(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelPublic]


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    tailor: TailorInfo


# --- export and import -------------------------------------------------------------------

MAX_IMPORT_ITEMS = 10_000


class ProfileExport(BaseModel):
    """Every stored row about the user (all versions, deleted ones, edits, audit), as
    JSON objects; embeddings are omitted (derived, recomputed on import)."""

    format: Literal["tailor-export-v1"]
    exported_at: datetime
    user: dict[str, Any]
    instructions: list[dict[str, Any]]
    examples: list[dict[str, Any]]
    edits: list[dict[str, Any]]
    preferences: list[dict[str, Any]]
    turns: list[dict[str, Any]] = Field(
        [], description="the recent turns' record: profile items used, newest first"
    )
    suggestions: list[dict[str, Any]] = Field(
        [], description="preferences captured from conversations, with their decisions"
    )
    captures: list[dict[str, Any]] = Field(
        [], description="conversations submitted for capture (messages kept until read)"
    )
    audit: list[dict[str, Any]]


class _Imported(BaseModel):
    """Rows of an export; ids and timestamps beyond these are ignored."""

    model_config = ConfigDict(extra="ignore")


class ImportedInstruction(_Imported):
    instruction_id: uuid.UUID
    version: int = Field(ge=1)
    text: InstructionText
    applies_when: ConditionText | None = None
    always_on: bool = False
    status: Literal["active", "disabled", "deleted"]
    source: Literal["user", "app", "inferred", "conversation"] = "app"
    # what the user pinned is restored; what was derived is derived again
    kind: Literal["constraint", "style"] | None = None
    kind_set_by: Literal["derived", "user"] | None = None
    domains: Domains | None = None
    typical_requests: TypicalRequests | None = None
    applicability_set_by: Literal["derived", "user"] | None = None


class ImportedExample(_Imported):
    id: uuid.UUID | None = Field(None, description="the exported example's id: imported once")
    prompt: ExamplePrompt
    chosen: ExampleAnswer
    rejected: ExampleAnswer
    valid_to: datetime | None = None


class ImportedEdit(_Imported):
    id: uuid.UUID | None = Field(None, description="the exported edit's id: imported once")
    context: EditContext
    draft: EditText
    edited: EditText
    task: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    applied_preference: PreferenceText | None = None
    distance: float = Field(ge=0, le=1)
    inference_status: Literal["pending", "running", "done", "skipped", "failed"]
    attempts: int = Field(0, ge=0, le=1000)
    last_error: str | None = Field(None, max_length=500)
    preference_id: uuid.UUID | None = None


class ImportedPreference(_Imported):
    preference_id: uuid.UUID
    version: int = Field(ge=1)
    text: PreferenceText
    status: Literal["suggested", "accepted", "rejected", "promoted"]


class ProfileImport(_RejectsNul):
    """An export document (as `GET .../export` returns it) to restore into this user.
    Items are recognised by their exported ids (`instruction_id`, an example's or an
    edit's `id`): importing the same export again skips what is already here."""

    model_config = ConfigDict(extra="ignore")

    format: Literal["tailor-export-v1"]
    instructions: list[ImportedInstruction] = Field([], max_length=MAX_IMPORT_ITEMS)
    examples: list[ImportedExample] = Field([], max_length=MAX_IMPORT_ITEMS)
    edits: list[ImportedEdit] = Field([], max_length=MAX_IMPORT_ITEMS)
    preferences: list[ImportedPreference] = Field([], max_length=MAX_IMPORT_ITEMS * 2)


class ImportResult(BaseModel):
    instructions: int
    examples: int
    edits: int
    preferences: int
    skipped: int = Field(
        0, description="items of the document already imported into this user (by their ids)"
    )
