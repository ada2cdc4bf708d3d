"""All configuration, from environment variables prefixed TAILOR_ (or a .env file).
The defaults run the embedded mode: SQLite + in-process FAISS + packaged models."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from personalization.context import ContextOptions

_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILOR_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development", description="production refuses weak admin tokens"
    )
    data_dir: Path = Field(Path("./data"), description="SQLite file and index snapshots")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/tailor.db"
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    admin_token: SecretStr | None = Field(
        None, description="enables POST /v1/tenants; unset means tenants come from the CLI only"
    )
    embedder_device: str = Field("cpu", description="torch device for the embedder")
    embedder_factory: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:callable returning another Embedder (default: packaged MiniLM)",
    )
    selection_threshold: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="relevance floor: once a profile does not fit whole, a conditional "
        "instruction needs this much evidence (best cosine of its keys to the turn, or the "
        "turn's domain score for a constraint in that domain) to apply",
    )
    selection_top_k: int = Field(
        10, ge=1, le=50, description="per-turn cap on conditional instructions"
    )
    selection_whole_profile: bool = Field(
        True,
        description="a profile whose conditional instructions are within the per-turn cap "
        "goes in whole, or by rank as far as the token budget holds, whatever their relevance",
    )
    examples_top_k: int = Field(4, ge=0, le=10, description="preference examples per turn")
    cipher_top_k: int = Field(5, ge=0, le=20, description="past edit contexts retrieved (CIPHER k)")
    edit_trivial_distance: float = Field(
        0.05,
        ge=0,
        le=1,
        description="normalized edit distance at or below which nothing is inferred",
    )
    edit_queue_limit: int = Field(1000, ge=1, description="edits waiting per tenant before 429")
    edit_max_attempts: int = Field(5, ge=1, le=50, description="inference tries per edit")
    edit_retry_backoff_s: float = Field(
        2.0, gt=0, description="first retry delay; doubles per attempt"
    )
    edit_lease_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="how long a claimed edit job is held; renewed while the model works, "
        "reclaimed by any replica once expired",
    )
    capture_chat: bool = Field(
        False,
        description="each /v1/chat/completions turn submits its user messages for capture",
    )
    capture_auto_accept: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="a captured suggestion this confident or more is accepted at once "
        "(applies to turns); unset: only suggestions the user or app accepts apply",
    )
    capture_reader: Literal["auto", "patterns", "model"] = Field(
        "auto",
        description="what reads captured conversations: the model-free detector "
        "(patterns), or it plus the chat model's extraction (model: finds implicit "
        "preferences, one model call per conversation); auto = model unless the "
        "backend is the embedded 135M model",
    )
    capture_queue_limit: int = Field(
        1000, ge=1, description="conversations waiting for capture per tenant before 429"
    )
    token_budget: int = Field(400, ge=16, le=8000, description="approx tokens of profile per turn")
    rate_limit_per_minute: int = Field(
        600, ge=0, description="requests per API key per minute (bursts too); 0 = off"
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="`tailor serve` worker processes on one port; each is a replica with its "
        "own models and vector cache (memory grows by about one process per worker)",
    )
    key_cache_ttl_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="an authenticated key's scope is reused this long; a revoked key stops "
        "working on every replica within it (0: read SQL on every request)",
    )
    embed_max_waiting: int = Field(
        256, ge=1, le=4096, description="embedding calls running or queued before 429"
    )
    embed_batch_size: int = Field(
        32, ge=1, le=256, description="most texts in one forward pass of the embedder"
    )
    embed_batch_wait_ms: float = Field(
        2.0, ge=0, le=100, description="longest wait for more texts to join a batch (under load)"
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="torch intra-op threads; default min(cores - 1, 2), at least 1",
    )
    omp_threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="OMP/MKL/OpenBLAS threads where not set in the environment; default torch's",
    )
    faiss_threads: int = Field(1, ge=1, le=256, description="FAISS OpenMP threads")
    scan_threads: int | None = Field(
        None,
        ge=1,
        le=64,
        description="threads that scan one large profile's vectors in a turn; default "
        "min(cores, 2)",
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger requests get 413")
    snapshot_interval_s: float = Field(30.0, gt=0, description="vector snapshot cadence")
    idempotency_ttl_s: float = Field(
        86_400.0, gt=0, description="how long an Idempotency-Key's response is kept"
    )
    idempotency_pending_s: float = Field(
        600.0, gt=0, description="after this, a key whose request never finished may be retried"
    )
    index_follow_interval_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="how often the change log is polled for other replicas' writes",
    )
    index_follow_gap_s: float = Field(
        30.0, gt=0, description="how long a missing change seq is awaited (in-flight commit)"
    )
    index_load_retries: int = Field(
        3, ge=1, le=100, description="index load tries that trust the snapshot before a rebuild"
    )
    index_load_backoff_s: float = Field(
        1.0, gt=0, le=60, description="first retry delay of a failed index load; doubles, max 30 s"
    )
    index_verify_at_start_mb: int = Field(
        64,
        ge=0,
        le=1 << 20,
        description="a vector snapshot up to this size is checksummed before ready; a larger "
        "one block by block on first use and in the background",
    )
    unready_unhealthy_after_s: float = Field(
        300.0, gt=0, description="/healthz answers 503 after this long not ready"
    )
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text", description="text for a terminal; json: one object per line, for a log pipeline"
    )
    metrics_enabled: bool = Field(True, description="serve Prometheus metrics at GET /metrics")
    metrics_token: SecretStr | None = Field(
        None, description="when set, GET /metrics needs Authorization: Bearer <this token>"
    )
    eager_load: bool = Field(
        True,
        description="load the chat model at start (readiness waits for it) instead of at the "
        "first call that needs it",
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="where people reach Tailor, for profile links; default http://host:port",
    )
    session_ttl_s: int = Field(
        1800, ge=60, le=86_400, description="lifetime of a profile-page session token"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated origins (scheme://host[:port]) allowed to call the API",
    )

    model_backend: Literal["embedded", "openai"] = Field(
        "embedded", description="embedded GGUF model, or any OpenAI-compatible server"
    )
    model_base_url: str | None = Field(
        None, description="OpenAI-compatible base URL, e.g. http://vllm:8000/v1"
    )
    model_name: str | None = Field(None, description="model name sent to that server")
    model_api_key: SecretStr | None = Field(None, description="bearer key for that server")
    model_timeout_s: float = Field(60.0, gt=0, description="read timeout per model call")
    model_max_retries: int = Field(2, ge=0, le=10, description="retries on 429/5xx/unreachable")
    model_max_waiting: int = Field(
        8, ge=1, le=1024, description="generations running or queued before 429"
    )
    model_context_tokens: int = Field(
        4096, ge=256, le=131072, description="embedded model's context window"
    )
    model_gpu_layers: int = Field(0, ge=-1, description="embedded: layers on the GPU (-1 = all)")
    turns_kept: int = Field(
        50, ge=0, le=1000, description="recent turns' provenance kept per user (0: none)"
    )
    turns_keep_message: bool = Field(
        False, description="also keep each recorded turn's last user message (clipped)"
    )
    create_users_on_chat: bool = Field(
        False,
        description="a chat turn (/v1/chat/completions or /context) for an unknown user "
        "creates it; off: 404 user_not_found until POST /v1/users",
    )
    generation_max_tokens: int = Field(256, ge=1, le=8192, description="default max_tokens")
    generation_temperature: float = Field(0.7, ge=0, le=2, description="default temperature")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, origins: list[str]) -> list[str]:
        """A wildcard would hand every site on the web a user's session token's reach."""
        for origin in origins:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(f"not an origin (scheme://host[:port], no path): {origin!r}")
        return origins

    @property
    def profile_base_url(self) -> str:
        """The URL the profile links start with: the public one, else where we listen."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @model_validator(mode="after")
    def _secure_outside_development(self) -> Settings:
        token = self.admin_token
        if self.environment == "production" and token and len(token.get_secret_value()) < 32:
            raise ValueError("TAILOR_ADMIN_TOKEN must be at least 32 characters in production")
        return self

    @model_validator(mode="after")
    def _remote_model_is_complete(self) -> Settings:
        if self.model_backend == "openai" and not (self.model_base_url and self.model_name):
            raise ValueError("TAILOR_MODEL_BACKEND=openai needs TAILOR_MODEL_BASE_URL and _NAME")
        return self

    def context_options(
        self,
        *,
        threshold: float | None = None,
        top_k: int | None = None,
        token_budget: int | None = None,
        examples_k: int | None = None,
        cipher_k: int | None = None,
        whole_profile: bool | None = None,
    ) -> ContextOptions:
        """A turn's retrieval options: the request's where it sets one, else these."""
        return ContextOptions(
            threshold=self.selection_threshold if threshold is None else threshold,
            top_k=self.selection_top_k if top_k is None else top_k,
            token_budget=self.token_budget if token_budget is None else token_budget,
            examples_k=self.examples_top_k if examples_k is None else examples_k,
            cipher_k=self.cipher_top_k if cipher_k is None else cipher_k,
            whole_profile=self.selection_whole_profile if whole_profile is None else whole_profile,
        )

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'tailor.db').resolve()}"

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "index"
