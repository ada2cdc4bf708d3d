"""Re-derivation of stored instructions (store/derivation.py): rows an older derivation
wrote are brought to the current one once per version, at start-up or by `tailor
rederive`; what a user pinned, and a row superseded meanwhile, are left alone. Runs on
SQLite and PostgreSQL with the hashing embedder (derivation is deterministic)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from personalization.applicability import (
    ApplicabilityModel,
    derivation_version,
    rederive_stored,
)
from service.app import create_app
from service.cli import main
from store.derivation import Rederived, _update
from store.models import ChangeLog, DerivationRun, Instruction, InstructionKind
from store.vector_index import decode_vector
from tests.conftest import Api, make_settings, wait_ready
from tests.fakes import HashingEmbedder, RecordingBackend

INSTR = "/v1/users/alice/instructions"
CELIAC = "I'm celiac, gluten makes me ill."
JAZZ = "I love 1950s jazz."


def _engine(api: Api) -> sa.Engine:
    engine: sa.Engine = api.client.app.state.ports.engine  # type: ignore[attr-defined]
    return engine


def _make_old(engine: sa.Engine, item_id: str, **values: Any) -> None:
    """What an older derivation (or a row from before kinds existed) left behind."""
    table = Instruction.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(
            sa.update(table)
            .where(table.c.instruction_id == uuid.UUID(item_id), table.c.valid_to.is_(None))
            .values(**values)
        )
        conn.execute(sa.delete(DerivationRun.__table__))  # type: ignore[attr-defined]


def _items(api: Api, h: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in api.client.get(INSTR, headers=h).json()["items"]}


def _profile(api: Api) -> tuple[dict[str, str], dict[str, Any], dict[str, Any], dict[str, Any]]:
    h = api.tenant()
    api.user(h, "alice")
    celiac = api.instruction(h, "alice", text=CELIAC)
    jazz = api.instruction(h, "alice", text=JAZZ)
    pinned = api.instruction(h, "alice", text="I never fly budget airlines.")
    response = api.client.patch(f"{INSTR}/{pinned['id']}", json={"domains": ["finance"]}, headers=h)
    assert response.status_code == 200, response.text
    return h, celiac, jazz, response.json()


def test_older_derivations_are_brought_up_to_date_once(api: Api) -> None:
    h, celiac, jazz, pinned = _profile(api)
    engine = _engine(api)
    embedder = HashingEmbedder()
    model = ApplicabilityModel(embedder)
    expected = {t: model.derive(t, embedder.embed([t])[0]) for t in (CELIAC, JAZZ)}
    assert celiac["domains"] == expected[CELIAC].domains  # what the write derived
    _make_old(engine, celiac["id"], kind="style", domains=["pets"])
    _make_old(
        engine, jazz["id"], kind=None, kind_set_by=None, domains=None, applicability_set_by=None
    )
    _make_old(engine, pinned["id"], kind="style")

    assert rederive_stored(model, engine) == 3
    after = _items(api, h)
    assert (after[celiac["id"]]["kind"], after[celiac["id"]]["domains"]) == (
        "constraint",
        expected[CELIAC].domains,
    )
    assert after[jazz["id"]]["kind"] == "style"
    assert after[jazz["id"]]["domains"] == expected[JAZZ].domains
    assert (after[jazz["id"]]["kind_set_by"], after[jazz["id"]]["applicability_set_by"]) == (
        "derived",
        "derived",
    )
    # the pinned domains stay; its derived kind is re-derived
    assert after[pinned["id"]]["domains"] == ["finance"]
    assert after[pinned["id"]]["applicability_set_by"] == "user"
    assert after[pinned["id"]]["kind"] == "constraint"
    # in place: no new version
    assert [after[i]["version"] for i in (celiac["id"], jazz["id"])] == [1, 1]
    with Session(engine) as session:
        logged = session.exec(
            select(ChangeLog.entity_id).where(col(ChangeLog.action) == "rederived")
        ).all()
        run = session.get(DerivationRun, derivation_version(model))
    assert {str(i) for i in logged} == {celiac["id"], jazz["id"], pinned["id"]}
    assert run is not None and run.updated == 3
    # once per version; forced again, nothing is left to change
    assert rederive_stored(model, engine) is None
    assert rederive_stored(model, engine, force=True) == 0


def test_a_start_brings_stored_rows_up_to_date(start_app: Callable[..., Api]) -> None:
    first = start_app()
    h, celiac, _, _ = _profile(first)
    _make_old(_engine(first), celiac["id"], kind="style", domains=["pets"])
    assert _items(first, h)[celiac["id"]]["kind"] == "style"
    second = start_app()  # another replica (or a restart) on the same database
    item = _items(second, h)[celiac["id"]]
    assert (item["kind"], item["domains"]) == ("constraint", celiac["domains"])


def test_a_row_superseded_meanwhile_is_left_to_its_new_version(api: Api) -> None:
    h, celiac, _, _ = _profile(api)
    engine = _engine(api)
    with Session(engine) as session:
        stale = session.exec(
            select(Instruction).where(
                col(Instruction.instruction_id) == uuid.UUID(celiac["id"]),
                col(Instruction.valid_to).is_(None),
            )
        ).one()
        session.expunge(stale)
    response = api.client.patch(f"{INSTR}/{celiac['id']}", json={"text": JAZZ}, headers=h)
    assert response.status_code == 200, response.text
    calls: list[str] = []

    def derive(text: str, vector: Any, kind: InstructionKind | None) -> Rederived:
        calls.append(text)
        assert vector.shape == decode_vector(stale.text_embedding, stale.embedding_dim).shape
        return Rederived(InstructionKind.constraint, ["pets"])

    with Session(engine) as session:
        assert _update(session, stale, derive) == 0
        session.commit()
    assert calls == [CELIAC]
    item = _items(api, h)[celiac["id"]]
    assert (item["version"], item["kind"]) == (2, "style")
    assert item["domains"] != ["pets"]


def test_the_rederive_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tailor rederive` on a database an older derivation wrote: once, then only with
    --force (the hashing embedder stands in through TAILOR_EMBEDDER_FACTORY)."""
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TAILOR_EMBEDDER_FACTORY", "tests.fakes:HashingEmbedder")
    settings = make_settings(tmp_path / "data")
    with TestClient(
        create_app(settings, embedder=HashingEmbedder(), backend=RecordingBackend())
    ) as client:
        wait_ready(client)
        api = Api(client)
        h, celiac, _, _ = _profile(api)
        _make_old(_engine(api), celiac["id"], kind="style", domains=["pets"])
        assert main(["rederive"]) == 0
        first = json.loads(capsys.readouterr().out)
        assert first["updated"] == 1 and first["derivation"].endswith(":lexical")
        assert _items(api, h)[celiac["id"]]["kind"] == "constraint"
        assert main(["rederive"]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out)["updated"] is None and "already done" in err
        assert main(["rederive", "--force"]) == 0
        assert json.loads(capsys.readouterr().out)["updated"] == 0
