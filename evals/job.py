"""One evaluation job: the chosen suites against one Tailor (remote or in-process),
into one results dict with every figure, its config and a flat metric list."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals import capture_eval, cipher_env, selection, selection_scale
from evals.cache import ItemCache
from evals.capture_client import CaptureClient
from evals.client import TailorClient
from evals.prefeval import runner as prefeval
from evals.prefeval.arms import Retriever
from evals.prefeval.data import SHIPPED, load_filler, load_items
from evals.prefeval.judge import Judge
from personalization.backends import ModelBackend
from personalization.embedder import Embedder

SUITES = {
    "nightly": ("prefeval", "cipher", "selection", "selection-at-scale", "capture"),
    "prefeval": ("prefeval",),
    "cipher": ("cipher",),
    "selection": ("selection",),
    "selection-at-scale": ("selection-at-scale",),
    "capture": ("capture",),
}
SCHEMA = 1


@dataclass(frozen=True)
class JobOptions:
    suite: str = "nightly"
    data: Path = SHIPPED
    selection_data: Path = selection.DATA_DIR / "selection_basic.json"
    prefeval: prefeval.PrefEvalConfig = field(default_factory=prefeval.PrefEvalConfig)
    scale: selection_scale.ScaleConfig = field(default_factory=selection_scale.ScaleConfig)
    capture: capture_eval.CaptureConfig = field(default_factory=capture_eval.CaptureConfig)
    cipher_rounds: int = 15
    cipher_k: int = 5
    cipher_max_tokens: int = 120
    service: str = "in-process"


def run_job(
    client: TailorClient,
    options: JobOptions,
    *,
    embedder: Embedder,
    cache: ItemCache,
    judge_backend: ModelBackend | None,
    user_model: ModelBackend | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    started, clock = datetime.now(UTC), time.monotonic()
    suites: dict[str, Any] = {}
    metrics: list[dict[str, Any]] = []
    for suite in SUITES[options.suite]:
        if suite == "prefeval":
            cfg = options.prefeval
            judge = Judge(judge_backend) if judge_backend and "generation" in cfg.tasks else None
            run = prefeval.PrefEvalRun(client, cfg, cache, Retriever(embedder), judge)
            items = prefeval.pick_items(load_items(options.data, cfg.forms), cfg)
            report = run.run(items, load_filler(options.data), progress)
            report["config"]["data"] = str(options.data)
            metrics += prefeval.metrics(report)
        elif suite == "cipher":
            report = cipher_env.run(
                client,
                embedder,
                rounds=options.cipher_rounds,
                seed=options.prefeval.seed,
                k=options.cipher_k,
                max_tokens=options.cipher_max_tokens,
                progress=progress,
                user_model=user_model,
            )
            metrics += cipher_env.metrics(report)
        elif suite == "capture":
            source = (
                capture_eval.detector_source(embedder)
                if options.capture.source == "detector"
                # the client's one call (retries on 429/503, ServiceError on failure)
                else capture_eval.api_source(client, CaptureClient(client.api))
            )
            report = capture_eval.run(source, embedder, options.capture, progress)
            metrics += capture_eval.metrics(report)
        elif suite == "selection-at-scale":
            report = selection_scale.run(client, options.scale, progress)
            metrics += selection_scale.metrics(report)
        else:
            dataset = selection.load_dataset(options.selection_data)
            report = selection.run_selection(client, dataset)
            report["data"] = str(options.selection_data)
            metrics += selection.metrics(report)
        suites[suite] = report
    return {
        "schema": SCHEMA,
        "started_at": started.isoformat(),
        "duration_s": round(time.monotonic() - clock, 1),
        "service": options.service,
        "suite": options.suite,
        "options": _jsonable(asdict(options)),
        "suites": suites,
        "metrics": metrics,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value
