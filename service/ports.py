"""The ports a route may need, built once in the app's lifespan."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from personalization.context import ContextBuilder
from personalization.embedder import Embedder
from personalization.profile_writes import ProfileWriter
from service.settings import Settings
from store.changes import ChangeLogReader
from store.db import create_db_engine, migrate
from store.index_manager import IndexManager
from store.instructions import InstructionRepository
from store.keys import KeyRepository
from store.users import UserRepository
from store.vector_index import VectorCache

log = logging.getLogger("tailor")


@dataclass
class Ports:
    settings: Settings
    engine: Engine
    embedder: Embedder
    keys: KeyRepository
    users: UserRepository
    instructions: InstructionRepository
    index: IndexManager
    writer: ProfileWriter
    context: ContextBuilder
    _stop: threading.Event = field(default_factory=threading.Event)
    _snapshotter: threading.Thread | None = None

    def start(self) -> None:
        self.index.start_background()
        self._snapshotter = threading.Thread(
            target=self._snapshot_loop, name="tailor-snapshot", daemon=True
        )
        self._snapshotter.start()

    def _snapshot_loop(self) -> None:
        while not self._stop.wait(self.settings.snapshot_interval_s):
            self.index.snapshot()

    def stop(self) -> None:
        self._stop.set()
        if self._snapshotter is not None:
            self._snapshotter.join(timeout=10)
        self.index.snapshot()
        self.engine.dispose()


def build_ports(settings: Settings, embedder: Embedder | None = None) -> Ports:
    engine = create_db_engine(settings.sqlalchemy_url)
    migrate(engine)
    if embedder is None:
        from personalization.embedder import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder(device=settings.embedder_device)
    keys = KeyRepository(engine)
    users = UserRepository(engine)
    instructions = InstructionRepository(engine)
    index = IndexManager(
        VectorCache(embedder.dim),
        [instructions],
        ChangeLogReader(engine),
        settings.snapshot_dir,
        embedder_id=embedder.model_id,
    )
    return Ports(
        settings=settings,
        engine=engine,
        embedder=embedder,
        keys=keys,
        users=users,
        instructions=instructions,
        index=index,
        writer=ProfileWriter(embedder, instructions, users, index),
        context=ContextBuilder(embedder, instructions, index),
    )
