"""`tailor doctor`: can this configuration serve? One line per check, `ok` or `fail`,
and a non-zero exit when any fails. It only reads: it never migrates the database,
writes a snapshot or downloads a model."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from service.cli_db import describe_database
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'fail':4}  {self.name:9} {self.detail}"


def check_database(settings: Settings) -> Check:
    """Reachable, and at the migrations' head (a server would migrate on start, but
    an old schema under a running replica is worth knowing about)."""
    import sqlalchemy as sa
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from store.db import alembic_config, create_db_engine

    where = describe_database(settings.sqlalchemy_url)
    url = sa.engine.make_url(settings.sqlalchemy_url)
    file = url.database if url.get_backend_name() == "sqlite" else None
    if file and file != ":memory:" and not os.path.exists(file):
        return Check("database", False, f"{where}: no such file: run `tailor bootstrap`")
    engine = create_db_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            current = MigrationContext.configure(conn).get_current_revision()
    except sa.exc.SQLAlchemyError as exc:
        return Check("database", False, f"{where}: {type(exc).__name__}: {exc.args[0]!s:.200}")
    finally:
        engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    if current != head:
        return Check(
            "database", False, f"{where}: schema at {current}, head is {head}: run `tailor migrate`"
        )
    return Check("database", True, f"{where}: schema at head {head}")


def check_embedder(settings: Settings) -> Check:
    """The embedder loads from what is installed (no hub) and embeds a sentence."""
    import importlib

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if settings.embedder_factory:
        module, _, name = settings.embedder_factory.partition(":")
        embedder = getattr(importlib.import_module(module), name)()
    else:
        from personalization.embedder import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder(device=settings.embedder_device)
    vectors = embedder.embed(["tailor doctor"])
    if vectors.shape != (1, embedder.dim):
        return Check("embedder", False, f"{embedder.model_id}: got shape {vectors.shape}")
    return Check("embedder", True, f"{embedder.model_id} loaded offline, dim {embedder.dim}")


def check_index(settings: Settings) -> Check:
    """The snapshot folder can be written, and a snapshot there is readable (one that
    is not is rebuilt from SQL on start, which a large tenant will feel)."""
    import json

    from store.snapshot import MANIFEST

    folder = settings.snapshot_dir
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return Check("index", False, f"{folder}: cannot be written ({existing} is not writable)")
    if existing != folder:
        return Check("index", True, f"{folder}: will be created, no snapshot yet")
    manifest = folder / MANIFEST
    if not manifest.exists():
        return Check("index", True, f"{folder}: writable, no snapshot yet (built from SQL)")
    try:
        body = json.loads(manifest.read_text())
        summary = (
            f"{body['count']} vectors of {body['embedder_id']}, change {body['last_change_seq']}"
        )
    except (OSError, ValueError, KeyError) as exc:
        return Check("index", False, f"{manifest}: unreadable ({exc}); it will be rebuilt")
    return Check("index", True, f"{folder}: snapshot of {summary}")


def check_backend(settings: Settings) -> Check:
    """The chat model: the packaged one loads, or the remote server answers."""
    if settings.model_backend == "openai":
        base = (settings.model_base_url or "").rstrip("/")
        key = settings.model_api_key.get_secret_value() if settings.model_api_key else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            answer = httpx.get(f"{base}/models", headers=headers, timeout=10.0)
        except httpx.HTTPError as exc:
            return Check("backend", False, f"{base}: unreachable ({type(exc).__name__})")
        if answer.status_code in (401, 403) or answer.status_code >= 500:
            return Check("backend", False, f"{base}: GET /models answered {answer.status_code}")
        return Check(
            "backend",
            True,
            f"{base} reachable (GET /models {answer.status_code}), model {settings.model_name}",
        )
    from personalization.backends.llama_cpp import LlamaCppBackend

    backend = LlamaCppBackend(n_ctx=256, n_gpu_layers=settings.model_gpu_layers)
    return Check("backend", True, f"embedded {backend.model_id} loaded offline")


CHECKS: dict[str, Callable[[Settings], Check]] = {
    "database": check_database,
    "embedder": check_embedder,
    "index": check_index,
    "backend": check_backend,
}


def run_checks(settings: Settings, skip: frozenset[str] = frozenset()) -> list[Check]:
    """Every check, each on its own: one failing (even by raising) does not hide the rest."""
    results = []
    for name, check in CHECKS.items():
        if name in skip:
            continue
        try:
            results.append(check(settings))
        except Exception as exc:  # a check's own crash is that check's failure
            results.append(Check(name, False, f"{type(exc).__name__}: {exc!s:.300}"))
    return results


def doctor(settings: Settings, skip: frozenset[str] = frozenset()) -> int:
    results = run_checks(settings, skip)
    for result in results:
        print(result.line())
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
