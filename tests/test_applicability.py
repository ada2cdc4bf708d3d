"""Kind, domains and typical requests of standing instructions: derived at write time,
shown by the API, pinned by PATCH, re-derived with the text, versioned. The hashing
embedder stands in for MiniLM (the kind comes from lexical cues, so it is real here);
tests/test_selection_real.py runs the same paths with the real model."""

from __future__ import annotations

from typing import Any

from personalization.applicability import classify, constraint_domains
from personalization.domains import named_domains
from store.instructions import InstructionEmbeddings
from store.models import InstructionKind, InstructionSource
from store.vector_index import encode_vector
from tests.conftest import Api

INSTR = "/v1/users/alice/instructions"


def patch(api: Api, h: dict[str, str], item_id: str, **body: Any) -> dict[str, Any]:
    response = api.client.patch(f"{INSTR}/{item_id}", json=body, headers=h)
    assert response.status_code == 200, response.text
    updated: dict[str, Any] = response.json()
    return updated


def test_the_kind_is_derived_at_write_time_and_shown(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    celiac = api.instruction(h, "alice", text="I'm celiac, gluten makes me ill.")
    jazz = api.instruction(h, "alice", text="I love 1950s jazz.")
    assert (celiac["kind"], celiac["kind_set_by"]) == ("constraint", "derived")
    assert (jazz["kind"], jazz["kind_set_by"]) == ("style", "derived")
    assert celiac["applicability_set_by"] == "derived"
    # a constraint reaches every domain of its kind of need (diet: food)
    assert "food" in celiac["domains"]
    assert celiac["typical_requests"] == []
    listed = api.client.get(INSTR, headers=h).json()["items"]
    assert {i["id"]: i["kind"] for i in listed} == {
        celiac["id"]: "constraint",
        jazz["id"]: "style",
    }


def test_a_pinned_kind_survives_text_changes_until_auto(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    made = api.instruction(h, "alice", text="I love spicy food.")
    assert made["kind"] == "style"
    pinned = patch(api, h, made["id"], kind="constraint")
    assert (pinned["kind"], pinned["kind_set_by"], pinned["version"]) == ("constraint", "user", 2)
    edited = patch(api, h, made["id"], text="I love very spicy food.")
    assert (edited["kind"], edited["kind_set_by"]) == ("constraint", "user")
    auto = patch(api, h, made["id"], kind="auto")
    assert (auto["kind"], auto["kind_set_by"]) == ("style", "derived")
    # derived again from each new text
    rewritten = patch(api, h, made["id"], text="I never eat pork.")
    assert (rewritten["kind"], rewritten["kind_set_by"]) == ("constraint", "derived")


def test_pinned_domains_are_kept_across_text_changes_and_auto_rederives(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    made = api.instruction(h, "alice", text="I'm vegan.")
    pinned = patch(api, h, made["id"], domains=["food", "fashion"])
    assert (pinned["domains"], pinned["applicability_set_by"]) == (["food", "fashion"], "user")
    assert pinned["kind"] == "constraint"
    edited = patch(api, h, made["id"], text="I'm strictly vegan.")
    assert edited["domains"] == ["food", "fashion"]
    auto = patch(api, h, made["id"], domains="auto")
    assert auto["applicability_set_by"] == "derived"
    fresh = api.instruction(h, "alice", text="I'm strictly vegan.")
    assert auto["domains"] == fresh["domains"]  # derived from the current text


def test_every_version_carries_its_own_applicability(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    made = api.instruction(h, "alice", text="I like bullet points.")
    patch(api, h, made["id"], kind="constraint", domains=["work"])
    patch(api, h, made["id"], always_on=True)  # no re-derivation: carried over
    history = api.client.get(f"{INSTR}/{made['id']}/history", headers=h).json()["versions"]
    got = [(v["version"], v["kind"], v["kind_set_by"], v["domains"]) for v in history]
    assert got == [
        (1, "style", "derived", made["domains"]),
        (2, "constraint", "user", ["work"]),
        (3, "constraint", "user", ["work"]),
    ]


def test_typical_requests_are_extra_keys(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    made = api.instruction(h, "alice", text="Metric units please.")
    other = api.instruction(h, "alice", text="Answer briefly.")
    quiet = {"threshold": 0.9, "whole_profile": False}
    query = "how much flour for pancakes"
    before = api.context(h, "alice", query, **quiet)
    assert before["instructions"] == []
    keyed = patch(api, h, made["id"], typical_requests=[query, "convert this recipe"])
    assert keyed["typical_requests"] == [query, "convert this recipe"]
    assert keyed["applicability_set_by"] == "user"
    after = api.context(h, "alice", query, **quiet)
    assert [(i["id"], i["reason"]) for i in after["instructions"]] == [
        (made["id"], "matched_request")
    ]
    assert other["id"] not in {i["id"] for i in after["instructions"]}
    # the keys follow the version: removing them removes the match
    patch(api, h, made["id"], typical_requests=[])
    assert api.context(h, "alice", query, **quiet)["instructions"] == []


def test_bad_applicability_input_is_a_clear_422(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    made = api.instruction(h, "alice", text="I'm vegan.")
    for body in (
        {"domains": ["astrology"]},
        {"kind": "rule"},
        {"typical_requests": ["x"] * 9},
        {"typical_requests": [""]},
    ):
        response = api.client.patch(f"{INSTR}/{made['id']}", json=body, headers=h)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
    versions = api.client.get(f"{INSTR}/{made['id']}/history", headers=h).json()["versions"]
    assert len(versions) == 1


def test_a_row_from_before_kinds_is_unknown_until_its_next_write(api: Api) -> None:
    """Rows written before migration 0004 have no kind or domains: they are scored by
    text and condition only, and get derived fields when their text is next written."""
    h = api.tenant()
    api.user(h, "alice")
    key = h["Authorization"].removeprefix("Bearer ")
    ports = api.client.app.state.ports  # type: ignore[attr-defined]
    scope = ports.users.resolve(ports.keys.authenticate(key), "alice")
    vector = ports.embedder.embed(["I'm allergic to peanuts."])[0]
    legacy = ports.writer._instructions.create(
        scope,
        text="I'm allergic to peanuts.",
        applies_when=None,
        always_on=False,
        source=InstructionSource.user,
        embeddings=InstructionEmbeddings(
            model=ports.embedder.model_id,
            dim=ports.embedder.dim,
            text=encode_vector(vector),
            condition=None,
        ),
    )
    ports.writer.mirror(legacy)
    shown = api.client.get(f"{INSTR}/{legacy.instruction_id}", headers=h).json()
    assert (shown["kind"], shown["domains"], shown["kind_set_by"]) == (None, None, None)
    ctx = api.context(h, "alice", "peanuts")
    assert [i["id"] for i in ctx["instructions"]] == [str(legacy.instruction_id)]
    assert ctx["instructions"][0]["kind"] is None
    rewritten = patch(api, h, str(legacy.instruction_id), text="I'm allergic to peanuts!")
    assert (rewritten["kind"], rewritten["kind_set_by"]) == ("constraint", "derived")
    assert "food" in rewritten["domains"]


def test_the_lexical_classifier_on_clear_cases() -> None:
    constraints = [
        "I'm severely allergic to shellfish.",
        "I use a wheelchair.",
        "I keep kosher.",
        "My budget is $500, not a cent more.",
        "I won't fly, ever.",
        "I'm seven months pregnant.",
    ]
    styles = [
        "I love bold, maximalist colour.",
        "Give me a concise summary first.",
        "Boutique hotels with character win for me.",
        "Jazz from the fifties is my favourite.",
    ]
    assert [classify(t) for t in constraints] == [InstructionKind.constraint] * len(constraints)
    assert [classify(t) for t in styles] == [InstructionKind.style] * len(styles)


def test_a_constraint_that_names_its_domain_applies_there_not_everywhere() -> None:
    """A budget for clothes is about fashion, not hotels; a strobe warning reaches
    screens, games and music, not dinner. `own` stands for the item's nearest domains."""
    clothes = constraint_domains("I can spend $80 on clothes this season, no more.", own=[])
    assert "fashion" in clothes
    assert not {"lodging", "food", "cars"} & set(clothes)
    nightly = constraint_domains("My hotel budget is $90 a night, tops.", own=["finance"])
    assert nightly[:1] == ["lodging"] and "finance" in nightly and "fashion" not in nightly
    # a diet that names a setting still applies to food, its need's core domain
    assert {"work", "food"} <= set(constraint_domains("No pork at work events, I keep halal.", []))
    strobe = constraint_domains("Strobe effects can set off my seizures.", own=[])
    assert {"screen", "games", "music"} <= set(strobe) and "food" not in strobe


def test_a_constraint_that_names_no_domain_reaches_every_domain_of_its_need() -> None:
    wheelchair = constraint_domains("I'm a full-time wheelchair user.", own=["fitness"])
    assert wheelchair[0] == "fitness"  # its nearest domains come first
    assert {"lodging", "transport", "travel", "home"} <= set(wheelchair)
    assert "food" not in wheelchair
    celiac = constraint_domains("I'm celiac.", own=[])
    assert "food" in celiac and "screen" not in celiac
    # one hand: games and devices, not what a foot injury would reach
    assert {"games", "technology"} <= set(constraint_domains("After a stroke I use one hand.", []))


def test_named_domains_match_word_starts_only() -> None:
    assert named_domains("Subtitles on everything I watch, please.") == ["screen"]
    assert named_domains("I'm ready when you are.") == []  # "read" is not "ready"
    assert named_domains("Games and in-app purchases are out.") == ["technology", "games"]


def test_export_and_import_keep_what_the_user_pinned(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    pinned = api.instruction(h, "alice", text="I like spicy food.")
    patch(api, h, pinned["id"], kind="constraint", domains=["food", "travel"])
    derived = api.instruction(h, "alice", text="I'm allergic to nickel.")
    export = api.client.get("/v1/users/alice/export", headers=h).json()
    assert "request_embeddings" not in str(export)
    api.user(h, "copy")
    assert api.client.post("/v1/users/copy/import", json=export, headers=h).status_code == 201
    items = api.client.get("/v1/users/copy/instructions", headers=h).json()["items"]
    by_text = {i["text"]: i for i in items}
    spicy = by_text["I like spicy food."]
    assert (spicy["kind"], spicy["kind_set_by"]) == ("constraint", "user")
    assert (spicy["domains"], spicy["applicability_set_by"]) == (["food", "travel"], "user")
    nickel = by_text["I'm allergic to nickel."]
    assert (nickel["kind"], nickel["kind_set_by"]) == ("constraint", "derived")
    assert nickel["domains"] == derived["domains"]
