"""The selection-at-scale suite: how pairs are dealt into profiles, the figures it
derives from what /context answered (with a scripted client whose choices are known),
and the whole suite through the CLI against a real in-process Tailor on a tiny
fixture in PrefEval's layout. No figure of the product's selection policy is asserted
here: that policy changes, and is measured on the real data with MiniLM."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from evals import selection_scale
from evals.cli import main
from evals.inprocess import in_process_service
from evals.job import SUITES
from evals.prefeval.data import PrefItem, load_items
from evals.selection_scale import Profile, ScaleConfig, deal, metrics, summarize
from evals.stats import proportion
from tests.fakes import HashingEmbedder, RecordingBackend

TOPICS = ("food", "travel", "tech", "pets")


def write_split(root: Path, split: str, per_topic: int, *, tag: str = "") -> list[PrefItem]:
    """`per_topic` pairs in each topic; every third one a constraint, and the pairs
    whose number is even carry the marker the scripted client selects."""
    folder = root / split / "explicit_preference"
    folder.mkdir(parents=True)
    for topic in TOPICS:
        entries = [
            {
                "preference": f"I {topic} rule {n}{tag}" + (" (reaches)" if n % 2 == 0 else ""),
                "question": f"What about {topic} case {n}{tag}?",
                "explanation": "",
                "kind": "constraint" if n % 3 == 0 else "style",
            }
            for n in range(per_topic)
        ]
        (folder / f"{topic}.json").write_text(json.dumps(entries), encoding="utf-8")
    return load_items(root / split, forms=("explicit",))


def test_every_pair_is_asked_once_in_full_profiles(tmp_path: Path) -> None:
    items = write_split(tmp_path, "dev", 6)  # 24 pairs
    for size in (1, 5, 10, 24):
        profiles = deal(items, size, seed=0)
        asked = [i.key for p in profiles for i in p.asked]
        assert sorted(asked) == sorted(i.key for i in items)  # each exactly once
        assert all(len(p.stored) == size for p in profiles)
        assert all(len({i.key for i in p.stored}) == size for p in profiles)  # no repeats
        assert all(not p.padding for p in profiles[:-1])
        assert len(profiles[-1].padding) == (-len(items)) % size
    five = deal(items, 5, seed=0)
    assert [p.asked for p in five] == [p.asked for p in deal(items, 5, seed=0)]
    assert [p.asked for p in five] != [p.asked for p in deal(items, 5, seed=1)]
    assert len({i.topic for i in five[0].asked}) > 1  # topics are mixed
    whole = deal(items, 50, seed=0)  # more than the split holds: one profile of all
    assert len(whole) == 1 and len(whole[0].stored) == 24 and not whole[0].padding
    assert deal([], 10, seed=0) == []


class ScriptedClient:
    """Selects the instructions whose text carries '(reaches)'; records every call."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, str]] = {}  # user -> id -> text
        self.created: list[str] = []
        self.extras: list[dict[str, Any]] = []
        self.asked: list[tuple[str, str]] = []

    def fresh_user(self, user_id: str) -> None:
        self.users[user_id] = {}
        self.created.append(user_id)

    def delete_user(self, user_id: str) -> None:
        self.users.pop(user_id, None)

    def add_instruction(self, user_id: str, text: str, **extra: Any) -> str:
        self.extras.append(extra)
        new_id = f"id-{sum(len(u) for u in self.users.values())}-{user_id}"
        self.users[user_id][new_id] = text
        return new_id

    def context(self, user_id: str, text: str, **options: Any) -> dict[str, Any]:
        assert not options  # default settings
        self.asked.append((user_id, text))
        chosen = [i for i, t in self.users[user_id].items() if t.endswith("(reaches)")]
        return {
            "instructions": [{"id": i} for i in chosen],
            "system_message": {"role": "system", "content": "x"} if chosen else None,
            "token_estimate": 7 * len(chosen),
        }


def test_figures_are_what_context_answered(tmp_path: Path) -> None:
    items = write_split(tmp_path, "dev", 6)
    write_split(tmp_path, "heldout2", 3, tag="h")
    client = ScriptedClient()
    cfg = ScaleConfig(data=tmp_path, splits=("dev", "heldout2"), sizes=(1, 10), seed=3)
    report = selection_scale.run(client, cfg, progress=False)

    assert not client.users  # every user removed
    assert all(extra == {} for extra in client.extras)  # stored as {"text": preference}
    assert Counter(client.created) == Counter(set(client.created))
    assert sorted(q for _, q in client.asked) == sorted(
        [i.question for i in items] * 2
        + [i.question for i in load_items(tmp_path / "heldout2", forms=("explicit",))] * 2
    )
    dev = report["splits"]["dev"]
    assert report["headline"] == "heldout2" and dev["pairs"] == 24
    one, ten = dev["sizes"]["1"], dev["sizes"]["10"]
    # Size 1: the marked half reach the model, the rest get an empty context.
    assert one["recall"] == proportion(12, 24)
    assert one["empty_rate"] == proportion(12, 24)
    assert (one["items_per_turn"], one["tokens_per_turn"]) == (0.5, 3.5)
    constraints = [i for i in items if i.kind == "constraint"]  # n = 0 (marked) and 3
    marked = sum(i.preference.endswith("(reaches)") for i in constraints)
    assert one["constraint_recall"] == proportion(marked, len(constraints))
    assert one["style_recall"] == proportion(12 - marked, 24 - len(constraints))
    assert one["by_topic"]["food"] == proportion(3, 6)
    assert (one["profiles"], one["profile_size"], one["padding"]) == (24, 1, 0)
    # Size 10: 3 profiles, the last topped up with 6 already-asked pairs.
    assert (ten["profiles"], ten["profile_size"], ten["padding"]) == (3, 10, 6)
    assert ten["recall"] == proportion(12, 24)
    profiles = deal(items, 10, seed=3)
    held = [sum(i.preference.endswith("(reaches)") for i in p.stored) for p in profiles]
    per_turn = [h for h, p in zip(held, profiles, strict=True) for _ in p.asked]
    assert ten["turns"] == 24 and ten["items_per_turn"] == round(sum(per_turn) / 24, 3)
    assert ten["empty_rate"] == proportion(per_turn.count(0), 24)
    # A seen split lists its misses at the largest size; the blind one never does.
    assert len(ten["misses"]) == 12 and "misses" not in one
    assert "misses" not in report["splits"]["heldout2"]["sizes"]["10"]

    named = {m["name"]: m for m in metrics(report)}
    recall = named["selection_at_scale.heldout2.size=10.recall"]
    assert (recall["kind"], recall["n"]) == ("rate", 12)
    assert named["selection_at_scale.dev.size=1.empty_rate"]["better"] == "lower"
    assert named["selection_at_scale.dev.size=10.tokens_per_turn"]["kind"] == "cost"
    assert named["selection_at_scale.dev.size=10.items_per_turn"]["kind"] == "cost"
    assert "selection_at_scale.dev.size=1.constraint_recall" in named
    assert len(named) == 2 * 2 * 6

    table = selection_scale.markdown(report)
    assert table.index("heldout2 (the figure that counts)") < table.index("dev (seen)")
    assert "| 1 | 0.500 [0.31, 0.69] |" in table  # dev, 12 of 24


def test_limit_takes_topics_in_turn(tmp_path: Path) -> None:
    write_split(tmp_path, "dev", 6)
    picked = selection_scale.load_split(tmp_path, "dev", limit=8)
    assert len(picked) == 8 and Counter(i.topic for i in picked) == dict.fromkeys(TOPICS, 2)
    # A sample, not the head of each file (which may list one kind first).
    assert {i.key for i in picked} != {f"explicit/{t}/{n}" for t in TOPICS for n in (0, 1)}
    again = selection_scale.load_split(tmp_path, "dev", limit=8)
    assert [i.key for i in again] == [i.key for i in picked]
    other = selection_scale.load_split(tmp_path, "dev", limit=8, seed=1)
    assert {i.key for i in other} != {i.key for i in picked}
    with pytest.raises(selection_scale.DatasetError, match="heldout: missing"):
        selection_scale.load_split(tmp_path, "heldout")


def test_summary_of_no_turns_is_empty_not_an_error() -> None:
    found = summarize([], [Profile(())])
    assert found["recall"]["value"] is None and found["items_per_turn"] is None


def test_over_the_real_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real app (routes, store, index): whatever it selects, a hit is exactly the
    asked-about instruction among those /context returned, and no user is left."""
    items = write_split(tmp_path, "dev", 3)
    write_split(tmp_path, "heldout", 2, tag="h")
    answers: list[tuple[str, dict[str, Any]]] = []
    stored: dict[str, str] = {}
    with in_process_service(embedder=HashingEmbedder(dim=1024), backend=RecordingBackend()) as c:
        real_context, real_add = c.context, c.add_instruction

        def context(user_id: str, text: str, **options: Any) -> dict[str, Any]:
            found = real_context(user_id, text, **options)
            answers.append((text, found))
            return found

        def add(user_id: str, text: str, **extra: Any) -> str:
            stored[new := real_add(user_id, text, **extra)] = text
            return new

        monkeypatch.setattr(c, "context", context)
        monkeypatch.setattr(c, "add_instruction", add)
        cfg = ScaleConfig(data=tmp_path, splits=("dev", "heldout"), sizes=(1, 5))
        report = selection_scale.run(c, cfg, progress=False)
        left = c.api.list_users()
    assert left["total"] == 0
    preference_of = {i.question: i.preference for i in items}
    dev_hits = [
        any(stored[str(i["id"])] == preference_of[q] for i in found["instructions"])
        for q, found in answers
        if q in preference_of
    ]
    assert len(dev_hits) == 2 * 12
    for n, size in enumerate(("1", "5")):
        entry = report["splits"]["dev"]["sizes"][size]
        assert entry["recall"]["successes"] == sum(dev_hits[12 * n : 12 * (n + 1)])
        tokens = [f["token_estimate"] for _, f in answers[12 * n : 12 * (n + 1)]]
        assert entry["tokens_per_turn"] == round(sum(tokens) / 12, 1)
    assert all(f["token_estimate"] > 0 for _, f in answers if f["instructions"])


def test_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "selection-at-scale" in SUITES["nightly"]
    data = tmp_path / "data"
    write_split(data, "dev", 3)
    write_split(data, "heldout", 2, tag="h")
    write_split(data, "heldout2", 1, tag="b")
    out = tmp_path / "run"
    args = [
        *("run", "--suite", "selection-at-scale", "--in-process", "--no-progress"),
        *("--out", str(out), "--scale-data", str(data), "--profile-sizes", "1,4"),
    ]
    assert main(args, embedder=HashingEmbedder(dim=1024), backend=RecordingBackend()) == 0
    results = json.loads((out / "results.json").read_text())
    scale = results["suites"]["selection-at-scale"]
    assert scale["config"]["sizes"] == [1, 4] and scale["splits"]["heldout"]["pairs"] == 8
    # By default every split runs; the blind heldout2 is the headline, the others are seen.
    assert scale["headline"] == "heldout2" and scale["splits"]["heldout2"]["pairs"] == 4
    assert {m["name"].split(".")[1] for m in results["metrics"]} == {"dev", "heldout", "heldout2"}
    assert "misses" in scale["splits"]["heldout"]["sizes"]["4"]
    assert "misses" not in scale["splits"]["heldout2"]["sizes"]["4"]
    html = (out / "report.html").read_text()
    section = html[html.index("<h2>Selection at scale</h2>") :]
    assert section.index("heldout2 (blind: the figure that counts)") < section.index("dev (seen)")
    assert "heldout (seen)" in section
    assert "Recall per topic, 4 preferences per profile" in section and "<svg" in section
    printed = capsys.readouterr().out
    assert "selection at scale, heldout2 (the figure that counts):" in printed
    # Gated like the other suites: the same figures again pass.
    again = [*args[:-6], "--out", str(tmp_path / "again"), *args[-4:]]
    again += ["--previous", str(out / "results.json")]
    assert main(again, embedder=HashingEmbedder(dim=1024), backend=RecordingBackend()) == 0
    assert (
        f"PASS: no regression over {len(results['metrics'])} figures"
        in (tmp_path / "again" / "report.html").read_text()
    )
    # A data folder without the splits is a message, not a trace.
    bad = [*args[:-4], "--scale-data", str(tmp_path / "nothing"), *args[-2:]]
    assert main(bad, embedder=HashingEmbedder(dim=1024), backend=RecordingBackend()) == 1
    err = capsys.readouterr().err
    assert "dev: missing" in err and "Traceback" not in err
