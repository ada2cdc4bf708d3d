"""The ports a route may need, built once in the app's lifespan."""

from __future__ import annotations

import importlib
import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from personalization.admission import AdmittedEmbedder, KeyRateLimiter
from personalization.applicability import ApplicabilityModel, rederive_stored
from personalization.applicability import derivation_version as applicability_version
from personalization.backends import ModelBackend
from personalization.backends.gate import GatedBackend
from personalization.capture_worker import CaptureWorker, Detector
from personalization.chat import ChatService
from personalization.cipher import CipherRetriever, PreferenceAggregator
from personalization.context import ContextBuilder
from personalization.domains import DOMAINS
from personalization.edit_worker import EditWorker
from personalization.edits import EditService
from personalization.embed_batching import BatchingEmbedder
from personalization.embedder import Embedder
from personalization.job_worker import JobTerms
from personalization.profile_import import ProfileImporter
from personalization.profile_writes import ProfileWriter
from personalization.provenance import TurnRecorder
from personalization.statement_detector import detect_statements
from personalization.statement_extractor import detector_with_model
from personalization.suggestions import CaptureService
from personalization.turn_batching import TurnLogWriter
from service.key_cache import KeyScopeCache
from service.metrics import (
    MODEL_LOAD_SECONDS,
    ObservedBackend,
    ObservedTurnRecorder,
    observe_embed_batch,
)
from service.settings import Settings
from service.threads import apply_thread_settings
from service.worker_slot import WorkerSlot, claim_slot
from store.captures import CaptureRepository
from store.changes import ChangeLogReader
from store.db import create_db_engine, migrate
from store.edits import EditRepository
from store.examples import ExampleRepository
from store.index_manager import IndexManager
from store.instructions import InstructionRepository
from store.keys import KeyRepository
from store.preferences import PreferenceRepository
from store.turns import TurnRepository
from store.users import UserRepository
from store.vector_index import VectorCache, layout_id

log = logging.getLogger("tailor")


@dataclass
class Ports:
    settings: Settings
    engine: Engine
    embedder: Embedder
    keys: KeyRepository
    users: UserRepository
    instructions: InstructionRepository
    examples: ExampleRepository
    edits: EditRepository
    preferences: PreferenceRepository
    index: IndexManager
    writer: ProfileWriter
    context: ContextBuilder
    chat: ChatService
    edit_service: EditService
    worker: EditWorker
    aggregator: PreferenceAggregator
    importer: ProfileImporter
    rate_limiter: KeyRateLimiter | None
    turns: TurnRepository
    turn_recorder: TurnRecorder
    captures: CaptureRepository
    capture_service: CaptureService
    capture_worker: CaptureWorker
    worker_slot: WorkerSlot | None = None  # with TAILOR_WORKERS > 1 (service/worker_slot.py)
    key_cache: KeyScopeCache = field(default_factory=lambda: KeyScopeCache(0))
    turn_log: TurnLogWriter | None = None  # batches turn records; flushed before reads
    embed_batcher: BatchingEmbedder | None = None
    gated_model: GatedBackend | None = None  # the configured model, built on first use
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.index.start_background()
        for name, loop in (
            ("tailor-snapshot", self._snapshot_loop),
            ("tailor-follow", self._follow_loop),
        ):
            thread = threading.Thread(target=loop, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.worker.start()
        self.capture_worker.start()
        if self.settings.eager_load and self.gated_model is not None:
            thread = threading.Thread(target=self._load_model, name="tailor-model", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _load_model(self) -> None:
        """Eager load (TAILOR_EAGER_LOAD): off the lifespan, so /healthz answers while it
        runs, and /readyz says 503 until it is done."""
        assert self.gated_model is not None
        delay = 1.0
        while True:
            try:
                self.gated_model.load()
                break
            except Exception as exc:  # readiness stays 503 while it keeps failing
                log.error(
                    "loading the chat model failed (next try in %.0f s): %s: %s",
                    delay,
                    type(exc).__name__,
                    exc,
                )
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, 30.0)

    def flush_turn_records(self) -> None:
        """Reads of a user's turns (the list, the export) see this replica's own turns:
        the records queued before the read are written first."""
        if self.turn_log is not None:
            self.turn_log.flush()

    def chat_model_loaded(self) -> bool:
        """A model handed in by the caller (tests, embedding apps) counts as loaded."""
        return self.gated_model is None or self.gated_model.loaded

    @property
    def ready(self) -> bool:
        """Serving needs the index; with eager loading, the chat model too."""
        model_ok = not self.settings.eager_load or self.chat_model_loaded()
        return self.index.ready and model_ok

    def _snapshot_loop(self) -> None:
        while not self._stop.wait(self.settings.snapshot_interval_s):
            self.index.snapshot()

    def _follow_loop(self) -> None:
        """Other replicas' writes (and deletes) reach this one's memory within about
        one interval, even for users who make no turns here."""
        while not self._stop.wait(self.settings.index_follow_interval_s):
            try:
                self.index.follow()
            except Exception as exc:  # the database may be briefly away; try next round
                log.warning("following the change log failed: %s: %s", type(exc).__name__, exc)

    def stop(self) -> None:
        self.worker.stop()
        self.capture_worker.stop()
        self.index.stop()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.index.snapshot()
        if self.turn_log is not None:
            self.turn_log.close()
        if self.embed_batcher is not None:
            self.embed_batcher.close()
        self.engine.dispose()
        if self.worker_slot is not None:
            self.worker_slot.release()


def _chat_loaded(seconds: float) -> None:
    MODEL_LOAD_SECONDS.labels("chat").set(seconds)


def build_backend(settings: Settings) -> GatedBackend:
    """The configured model behind admission control, built on first use."""
    if settings.model_backend == "openai":
        base_url, name = settings.model_base_url or "", settings.model_name or ""
        key = settings.model_api_key.get_secret_value() if settings.model_api_key else None

        def remote() -> ModelBackend:
            from personalization.backends.openai_compatible import OpenAICompatibleBackend

            return OpenAICompatibleBackend(
                base_url,
                name,
                api_key=key,
                timeout_s=settings.model_timeout_s,
                max_retries=settings.model_max_retries,
            )

        return GatedBackend(
            remote, max_waiting=settings.model_max_waiting, model_id=name, on_load=_chat_loaded
        )

    from personalization.backends.llama_cpp import SMOLLM2_ID

    def embedded() -> ModelBackend:
        from personalization.backends.llama_cpp import LlamaCppBackend

        return LlamaCppBackend(
            n_ctx=settings.model_context_tokens, n_gpu_layers=settings.model_gpu_layers
        )

    return GatedBackend(
        embedded, max_waiting=settings.model_max_waiting, model_id=SMOLLM2_ID, on_load=_chat_loaded
    )


def load_embedder(settings: Settings) -> Embedder:
    """The configured embedder, loaded now (the lifespan waits for it), with its time
    logged: the first turn never pays for it."""
    start = time.perf_counter()
    if settings.embedder_factory:
        log.info("loading embedder from %s", settings.embedder_factory)
        module, _, name = settings.embedder_factory.partition(":")
        embedder: Embedder = getattr(importlib.import_module(module), name)()
    else:
        from personalization.embedder import MINILM_ID, SentenceTransformerEmbedder

        log.info("loading embedder %s on %s", MINILM_ID, settings.embedder_device)
        embedder = SentenceTransformerEmbedder(device=settings.embedder_device)
    seconds = time.perf_counter() - start
    MODEL_LOAD_SECONDS.labels("embedder").set(seconds)
    log.info("embedder %s loaded in %.1f s", embedder.model_id, seconds)
    return embedder


def capture_reader(settings: Settings, model: ModelBackend, *, embedded: bool) -> Detector:
    """`embedded`: the backend was built from the settings (not handed in by a caller),
    so `model_backend == "embedded"` means the 135M model, too small to extract."""
    use_model = settings.capture_reader == "model" or (
        settings.capture_reader == "auto"
        and not (embedded and settings.model_backend == "embedded")
    )
    return detector_with_model(model) if use_model else detect_statements


def build_ports(
    settings: Settings, embedder: Embedder | None = None, backend: ModelBackend | None = None
) -> Ports:
    engine = create_db_engine(settings.sqlalchemy_url)
    migrate(engine)
    apply_thread_settings(settings, load_torch=embedder is None)
    if embedder is None:
        embedder = load_embedder(settings)
    batcher = BatchingEmbedder(
        embedder,
        max_batch=settings.embed_batch_size,
        max_wait_s=settings.embed_batch_wait_ms / 1000,
        on_batch=observe_embed_batch,
    )
    embedder = AdmittedEmbedder(
        batcher, max_waiting=settings.embed_max_waiting, throughput=batcher.sentences_per_second
    )
    gated: GatedBackend | None = None
    if backend is None:
        gated = backend = build_backend(settings)
    model = ObservedBackend(backend)
    keys = KeyRepository(engine)
    users = UserRepository(engine)
    instructions = InstructionRepository(engine, domain_order=DOMAINS)
    examples = ExampleRepository(engine)
    edits = EditRepository(engine)
    preferences = PreferenceRepository(engine)
    # Several worker processes on one data folder: each owns a snapshot folder.
    slot = claim_slot(settings.data_dir, settings.snapshot_dir) if settings.workers > 1 else None
    index = IndexManager(
        VectorCache(embedder.dim),
        [instructions, examples, edits],
        ChangeLogReader(engine),
        slot.snapshot_dir if slot is not None else settings.snapshot_dir,
        embedder_id=embedder.model_id,
        load_retries=settings.index_load_retries,
        load_backoff_s=settings.index_load_backoff_s,
        verify_at_start_bytes=settings.index_verify_at_start_mb << 20,
        follow_gap_timeout_s=settings.index_follow_gap_s,
        meta_layout=layout_id(DOMAINS),
    )
    aggregator = PreferenceAggregator(model)
    index.forget_hooks.append(aggregator.forget_user)  # a deleted user's phrases too
    applicability = ApplicabilityModel(embedder)  # embeds the domain prototypes, once
    # Rows derived by an older derivation are brought up to date once per version, before
    # the index loads (store/derivation.py; replica-safe through the database).
    rederived = rederive_stored(applicability, engine)
    if rederived is not None:
        log.info(
            "derivation %s: %d stored instruction(s) re-derived",
            applicability_version(applicability),
            rederived,
        )
    context = ContextBuilder(
        embedder,
        instructions,
        examples,
        index,
        CipherRetriever(index, preferences, aggregator),
        applicability=applicability,
    )
    writer = ProfileWriter(
        embedder, instructions, examples, users, index, applicability=applicability
    )
    job_terms = JobTerms(
        max_attempts=settings.edit_max_attempts,
        backoff_s=settings.edit_retry_backoff_s,
        lease_s=settings.edit_lease_s,
    )
    worker = EditWorker(
        edits,
        model,
        index,
        terms=job_terms,
    )
    captures = CaptureRepository(engine)
    capture_worker = CaptureWorker(
        captures,
        instructions,
        embedder,
        index,
        detect=capture_reader(settings, model, embedded=gated is not None),
        auto_accept=settings.capture_auto_accept,
        terms=job_terms,
    )
    capture_service = CaptureService(
        captures,
        instructions,
        writer,
        index,
        capture_worker,
        queue_limit=settings.capture_queue_limit,
    )
    capture_worker.service = capture_service
    window = settings.model_context_tokens if settings.model_backend == "embedded" else None
    turns = TurnRepository(engine)
    turn_log = TurnLogWriter(turns)
    return Ports(
        settings=settings,
        engine=engine,
        embedder=embedder,
        keys=keys,
        users=users,
        instructions=instructions,
        examples=examples,
        edits=edits,
        preferences=preferences,
        index=index,
        writer=writer,
        context=context,
        chat=ChatService(context, model, context_window=window),
        edit_service=EditService(
            embedder,
            edits,
            preferences,
            writer,
            index,
            worker,
            trivial_distance=settings.edit_trivial_distance,
            queue_limit=settings.edit_queue_limit,
        ),
        worker=worker,
        aggregator=aggregator,
        importer=ProfileImporter(
            embedder, writer, engine, index, queue_limit=settings.edit_queue_limit
        ),
        rate_limiter=(
            KeyRateLimiter(settings.rate_limit_per_minute)
            if settings.rate_limit_per_minute
            else None
        ),
        turns=turns,
        turn_recorder=ObservedTurnRecorder(
            turn_log, keep=settings.turns_kept, keep_message=settings.turns_keep_message
        ),
        turn_log=turn_log,
        key_cache=KeyScopeCache(settings.key_cache_ttl_s, unexpired=keys.unexpired),
        worker_slot=slot,
        captures=captures,
        capture_service=capture_service,
        capture_worker=capture_worker,
        embed_batcher=batcher,
        gated_model=gated,
    )
