"""A real HTTP server on loopback that speaks the OpenAI chat protocol from a script of
answers (status codes, bodies, delays, SSE streams). For testing the client's retry,
timeout and streaming logic over a real socket; the real model has its own tests."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


@dataclass
class Scripted:
    status: int = 200
    text: str = "hello from the server"
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw: str | None = None  # a body to send as-is
    hold: threading.Event | None = None  # answer only once the test sets it


def completion(text: str, model: str) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }


class ScriptedServer:
    def __init__(self) -> None:
        self.script: list[Scripted] = []
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            self.requests.append(body)
            self.auth.append(request.headers.get("authorization"))
            step = self.script.pop(0) if self.script else Scripted()
            if step.delay_s:
                time.sleep(step.delay_s)
            if step.hold is not None:
                await asyncio.to_thread(step.hold.wait, 60)
            if step.raw is not None:
                return Response(step.raw, status_code=step.status, media_type="application/json")
            if step.status != 200:
                return JSONResponse({"error": {"message": "scripted"}}, step.status, step.headers)
            if body.get("stream"):
                return StreamingResponse(
                    self._sse(step.text, body["model"]), media_type="text/event-stream"
                )
            return JSONResponse(completion(step.text, body["model"]))

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @staticmethod
    def _sse(text: str, model: str) -> Iterator[str]:
        for i, word in enumerate(text.split(" ")):
            piece = word if i == 0 else " " + word
            chunk = {
                "id": "x",
                "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            yield f"data: {json.dumps(chunk)}\n\n"
        last = {
            "id": "x",
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        yield f"data: {json.dumps(last)}\n\n"
        yield "data: [DONE]\n\n"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
