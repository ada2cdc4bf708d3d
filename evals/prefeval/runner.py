"""Runs PrefEval's tasks for every (filler turns, item, arm) through Tailor's chat
endpoint, so all arms use the one model behind the service:

- baselines (zero-shot, reminder, rag) chat as a user with an empty profile, which
  Tailor passes to the model untouched;
- the tailor arm chats as a user whose profile holds the preference: the stated one
  for explicit items; for implicit ones, what Tailor's capture feature finds in the
  conversation (submitted to POST /v1/users/{id}/conversations, its suggestions
  accepted as a user would), and the same history besides.

Every answer is cached as soon as it is known (evals/cache.py)."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from itertools import islice, zip_longest
from typing import Any

from tqdm import tqdm

from evals.cache import ItemCache
from evals.capture_client import CaptureClient
from evals.client import ChatReply, ServiceError, ServiceModel, TailorClient
from evals.prefeval.arms import (
    ARMS,
    TURNS,
    Retriever,
    final_message,
    fit_window,
    mcq_prompt,
    parse_choice,
)
from evals.prefeval.data import FORMS, Form, PrefItem, filler_turns, shuffled_options
from evals.prefeval.judge import ERROR_TYPES, Judge, agreement, load_labelled
from evals.stats import proportion
from personalization.backends import GenerationSettings
from personalization.messages import ChatMessage

PROMPT_VERSION = 2  # bump when a prompt changes: cached answers are then recomputed
BASELINE_USER = "tailor-eval-baseline"
TASKS = ("mcq", "generation")
CHANCE = 0.25


@dataclass(frozen=True)
class PrefEvalConfig:
    turns: tuple[int, ...] = TURNS
    arms: tuple[str, ...] = ARMS
    tasks: tuple[str, ...] = TASKS
    forms: tuple[Form, ...] = FORMS
    seed: int = 0
    limit: int | None = None  # first N items (per form, round-robin over topics)
    context_window: int = 4096
    profile_reserve: int = 600  # room kept for Tailor's block, in every arm alike
    mcq_max_tokens: int = 8
    generation_max_tokens: int = 200
    judge_agreement: bool = True


@dataclass
class _Cell:
    counts: Counter[str] = field(default_factory=Counter)
    n: int = 0


def pick_items(items: list[PrefItem], cfg: PrefEvalConfig) -> list[PrefItem]:
    """The items of the chosen forms; with a limit, the first `limit` of each form,
    taken from its topics in turn so a small run still spans topics."""
    chosen = [i for i in items if i.form in cfg.forms]
    if cfg.limit is None:
        return chosen
    out: list[PrefItem] = []
    for form in dict.fromkeys(i.form for i in chosen):
        by_topic: dict[str, list[PrefItem]] = defaultdict(list)
        for item in chosen:
            if item.form == form:
                by_topic[item.topic].append(item)
        in_turn = (i for row in zip_longest(*by_topic.values()) for i in row if i is not None)
        out.extend(islice(in_turn, cfg.limit))
    return out


def _user_id(item: PrefItem, arm: str) -> str:
    return "tailor-eval-" + hashlib.sha256(f"{arm}:{item.key}".encode()).hexdigest()[:16]


class PrefEvalRun:
    def __init__(
        self,
        client: TailorClient,
        cfg: PrefEvalConfig,
        cache: ItemCache,
        retriever: Retriever,
        judge: Judge | None,
    ) -> None:
        self._client = client
        self._cfg = cfg
        self._cache = cache
        self._retriever = retriever
        self._judge = judge
        self._bare = ServiceModel(client, BASELINE_USER)
        # the client's one call (retries on 429/503, ServiceError on failure)
        self._capture = CaptureClient(client.api)
        self._profiles: dict[tuple[str, str], dict[str, Any]] = {}
        self.model = ""

    def _chat(
        self,
        user: str,
        item: PrefItem,
        prompt: str,
        arm: str,
        filler: list[ChatMessage],
        max_tokens: int,
    ) -> tuple[ChatReply, dict[str, Any]]:
        final = final_message(
            arm, prompt, item.question, [*item.conversation, *filler], self._retriever
        )
        budget = int(self._cfg.context_window * 0.9) - max_tokens - self._cfg.profile_reserve
        settings = GenerationSettings(max_tokens=max_tokens, temperature=0.0, seed=self._cfg.seed)
        for _ in range(4):
            fitted = fit_window(item.conversation, filler, final, budget)
            try:
                reply = self._client.chat(user, fitted.messages, settings)
                break
            except ServiceError as exc:
                if exc.code != "context_too_long":
                    raise
                budget = int(budget * 0.75)  # the service counts differently: cut more
        else:
            raise ServiceError(422, "context_too_long", "no history cut fits the window")
        used = [p for p in reply.profile_items if p.get("kind") == "standing_instruction"]
        return reply, {
            "dropped_messages": fitted.dropped,
            "truncated": fitted.dropped > 0,
            "preference_kept": fitted.preference_kept,
            "profile_used": bool(used),
        }

    def _profile(self, item: PrefItem, arm: str) -> dict[str, Any]:
        """A tailor arm's user and instruction, set up on first need. `tailor` leaves
        the instruction to Tailor's per-turn selection; `tailor-always` marks it
        always-on, so the two together separate selection misses from the model's."""
        if (item.key, arm) in self._profiles:
            return self._profiles[(item.key, arm)]
        user = _user_id(item, arm)
        self._client.fresh_user(user)
        always_on = arm == "tailor-always"
        text = item.preference if item.form == "explicit" else ""
        error = None
        try:
            if item.form == "explicit":
                self._client.add_instruction(user, text, source="user", always_on=always_on)
            else:
                text, error = self._captured(user, item, always_on)
        except ServiceError as exc:  # e.g. a sentence the API refuses
            error = f"{exc.code}: {exc}"
        self._profiles[(item.key, arm)] = {"user": user, "instruction": text, "error": error}
        return self._profiles[(item.key, arm)]

    def _captured(self, user: str, item: PrefItem, always_on: bool) -> tuple[str, str | None]:
        """Implicit items go through capture, the product path: the conversation is
        submitted, and what it suggests is accepted (`tailor`) or, for `tailor-always`,
        stored as always-on instructions (the suggestions then stay pending). The stored
        text is every captured statement, joined; "" when capture found nothing."""
        status, found = self._capture.capture(user, item.conversation)
        if status != "done":
            return "", f"capture {status}"
        for suggestion in found:
            if always_on:
                self._client.add_instruction(user, suggestion.text, source="user", always_on=True)
            else:
                self._capture.accept(user, suggestion.id)
        return " ".join(s.text for s in found), None

    def _cell(
        self,
        task: str,
        item: PrefItem,
        arm: str,
        turns: int,
        pool: list[tuple[ChatMessage, ChatMessage]],
    ) -> dict[str, Any]:
        profile = self._profile(item, arm) if arm.startswith("tailor") else None
        parts = {
            "task": task,
            "item": item.key,
            "arm": arm,
            "turns": turns,
            "model": self.model,
            "seed": self._cfg.seed,
            "window": self._cfg.context_window,
            "v": PROMPT_VERSION,
            "instruction": profile["instruction"] if profile else None,
            "judge": self._judge.model_id if (self._judge and task == "generation") else None,
        }
        return self._cache.remember(
            parts, lambda: self._answer(task, item, arm, turns, pool, profile)
        )

    def _answer(
        self,
        task: str,
        item: PrefItem,
        arm: str,
        turns: int,
        pool: list[tuple[ChatMessage, ChatMessage]],
        profile: dict[str, Any] | None,
    ) -> dict[str, Any]:
        filler, repeated = filler_turns(pool, turns)
        user = profile["user"] if profile else BASELINE_USER
        record: dict[str, Any]
        if task == "mcq":
            options, correct = shuffled_options(item, self._cfg.seed)
            reply, info = self._chat(
                user,
                item,
                mcq_prompt(item.question, options),
                arm,
                filler,
                self._cfg.mcq_max_tokens,
            )
            choice = parse_choice(reply.text, options)
            record = {"choice": choice, "correct": choice == correct, "answer": reply.text[:300]}
        else:
            reply, info = self._chat(
                user, item, item.question, arm, filler, self._cfg.generation_max_tokens
            )
            record = {"response": reply.text}
            if self._judge is not None:
                record["verdict"] = self._judge.verdict(
                    item.preference, item.question, reply.text
                ).as_dict()
        record.update(info, filler_repeated=repeated, form=item.form)
        return record

    def run(
        self,
        items: list[PrefItem],
        pool: list[tuple[ChatMessage, ChatMessage]],
        progress: bool = True,
    ) -> dict[str, Any]:
        cfg = self._cfg
        self._client.fresh_user(BASELINE_USER)
        self.model = self._bare.complete(
            [ChatMessage("user", "Say OK.")], GenerationSettings(max_tokens=2, temperature=0.0)
        ).model
        tasks = list(cfg.tasks)
        cells: dict[tuple[str, str, int], _Cell] = defaultdict(_Cell)
        by_form: dict[tuple[str, str, str], _Cell] = defaultdict(_Cell)
        plan = [
            (task, turns, item, arm)
            for task in tasks
            for turns in cfg.turns
            for item in items
            if task != "mcq" or item.options is not None
            for arm in cfg.arms
        ]
        try:
            for task, turns, item, arm in tqdm(plan, desc="prefeval", disable=not progress):
                record = self._cell(task, item, arm, turns, pool)
                cell = cells[(task, arm, turns)]
                cell.n += 1
                outcome = _outcome(task, record)
                cell.counts[outcome] += 1
                for flag in ("truncated", "filler_repeated", "profile_used"):
                    cell.counts[flag] += bool(record[flag])
                cell.counts["preference_dropped"] += not record["preference_kept"]
                if task == "mcq":
                    cell.counts["parse_failures"] += record["choice"] is None
                by_form[(task, arm, item.form)].n += 1
                by_form[(task, arm, item.form)].counts[outcome] += 1
            judged = (
                self._agreement(progress)
                if (self._judge is not None and "generation" in tasks and cfg.judge_agreement)
                else None
            )
        finally:
            for profile in self._profiles.values():
                self._client.delete_user(profile["user"])
            self._client.delete_user(BASELINE_USER)
        return {
            "config": {
                **asdict(cfg),
                "model": self.model,
                "items": len(items),
                "judge": self._judge.model_id if self._judge else None,
            },
            "chance": CHANCE,
            "tasks": {task: _table(cells, task, cfg) for task in tasks},
            "by_form": {task: _form_table(by_form, task, cfg) for task in tasks},
            "tailor_profiles": [
                {"item": item, "instruction": v["instruction"], "error": v["error"]}
                for (item, arm), v in sorted(self._profiles.items())
                if arm == "tailor" or (item, "tailor") not in self._profiles
            ],
            "judge_agreement": judged,
        }

    def _agreement(self, progress: bool) -> dict[str, Any]:
        assert self._judge is not None
        judge, labelled = self._judge, load_labelled()
        verdicts = []
        for n, item in enumerate(tqdm(labelled, desc="judge agreement", disable=not progress)):

            def judged(item: dict[str, Any] = item) -> dict[str, Any]:
                return judge.verdict(
                    item["preference"], item["question"], item["response"]
                ).as_dict()

            parts = {
                "label": n,
                "judge": judge.model_id,
                "v": PROMPT_VERSION,
                "response": item["response"],
            }
            verdicts.append(self._cache.remember(parts, judged))
        return agreement(verdicts, labelled)


def _outcome(task: str, record: dict[str, Any]) -> str:
    if task == "mcq":
        return "correct" if record["correct"] else "wrong"
    verdict = record.get("verdict")
    return str(verdict["error_type"]) if verdict else "unjudged"


def _success(task: str) -> str:
    return "correct" if task == "mcq" else "followed"


def _table(
    cells: dict[tuple[str, str, int], _Cell], task: str, cfg: PrefEvalConfig
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for arm in cfg.arms:
        out[arm] = {}
        for turns in cfg.turns:
            cell = cells.get((task, arm, turns))
            if cell is None:
                continue
            entry = proportion(cell.counts[_success(task)], cell.n)
            for flag in ("truncated", "preference_dropped", "filler_repeated", "profile_used"):
                entry[flag] = cell.counts[flag]
            if task == "mcq":
                entry["parse_failures"] = cell.counts["parse_failures"]
            else:
                entry["error_types"] = {t: cell.counts[t] for t in ERROR_TYPES}
            out[arm][str(turns)] = entry
    return out


def _form_table(
    cells: dict[tuple[str, str, str], _Cell], task: str, cfg: PrefEvalConfig
) -> dict[str, dict[str, Any]]:
    return {
        arm: {
            form: proportion(
                cells[(task, arm, form)].counts[_success(task)], cells[(task, arm, form)].n
            )
            for form in cfg.forms
            if (task, arm, form) in cells
        }
        for arm in cfg.arms
    }


Metric = dict[str, Any]


def metrics(report: dict[str, Any]) -> list[Metric]:
    """The flat figures the regression gate compares."""
    out: list[Metric] = []
    for task, table in report["tasks"].items():
        for arm, by_turns in table.items():
            for turns, entry in by_turns.items():
                if entry["value"] is not None:
                    out.append(
                        {
                            "name": f"prefeval.{task}.{arm}.turns={turns}.accuracy",
                            "value": entry["value"],
                            "n": entry["n"],
                            "kind": "rate",
                        }
                    )
    return out
