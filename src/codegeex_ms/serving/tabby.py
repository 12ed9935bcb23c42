"""Tabby's API on serve.py, for the Tabby IDE plugins (their shared client, tabby-agent): the segments form of
``POST /v1/completions`` (told apart from the OpenAI form by its ``segments`` field), ``GET /v1/health`` and
``POST /v1/events``.

A completion is left-to-right from ``segments.prefix``: CodeGeeX-1 has no fill-in-the-middle training, so the suffix
and the other context Tabby sends (file path, declarations, snippets, clipboard) are not used. With a ``language``
this server knows, the prompt gets its language tag and the completion that language's stop rule; the completion
is the rest of the line when the cursor follows code on its line, else a block (as the CodeGeeX extension's
``_adapt`` call). Temperature 0.1 unless the request gives one; at most 64 new tokens (or the server's limit).
Events (views, selections) are accepted and not kept.
"""
from __future__ import annotations

import os
import platform
import uuid

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from .. import prompts
from ..generation import SamplingConfig
from ..languages import UnknownLanguageError, canonical_language
from .engine import Engine, wait_for

MAX_NEW_TOKENS = 64
TEMPERATURE = 0.1


class Segments(BaseModel):
    model_config = ConfigDict(extra="allow")          # editor context this model does not use
    prefix: str
    suffix: str | None = None


class TabbyRequest(BaseModel):
    model_config = ConfigDict(extra="allow")          # Tabby's own server ignores fields it does not know
    segments: Segments
    language: str | None = None
    user: str | None = None
    temperature: float | None = Field(None, gt=0.0, le=5.0)
    seed: int | None = Field(None, ge=0)


async def tabby_completion(engine: Engine, body: TabbyRequest, request: Request) -> dict:
    prefix = body.segments.prefix
    try:
        language = canonical_language(body.language) if body.language else None
    except UnknownLanguageError:
        language = None                               # "plaintext", "markdown", ...: no tag, no stop rule
    prompt = prompts.build("complete", prefix, language) if language else prompts.Prompt(prefix, None)
    stop = ("\n",) if prefix[prefix.rfind("\n") + 1:].strip() else ()
    max_new = min(MAX_NEW_TOKENS, engine.limits.max_new_tokens)
    ids = engine.check(prompt.text, max_new, 1)
    cfg = SamplingConfig(max_new_tokens=max_new, temperature=body.temperature or TEMPERATURE, top_p=1.0,
                         seed=body.seed if body.seed is not None else uuid.uuid4().int % 2**32,
                         stop=list(stop), language=prompt.language)
    result, _ = await wait_for(engine, engine.submit(ids, cfg, 1), request)
    return {"id": f"cmpl-{uuid.uuid4()}", "choices": [{"index": 0, "text": result.completions[0]}]}


def _cpu_info() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def add_tabby_routes(app: FastAPI, engine: Engine) -> None:
    @app.get("/v1/health")
    async def tabby_health():
        """Tabby's health answer, which its clients read to show the server."""
        from importlib.metadata import version
        import mindspore as ms
        device = ms.get_context("device_target")
        return {"model": engine.model_name, "chat_model": None, "device": {"CPU": "cpu", "GPU": "cuda"}.get(device,
                device.lower()), "arch": platform.machine(), "cpu_info": _cpu_info(), "cpu_count": os.cpu_count(),
                "cuda_devices": [], "accelerators": [],
                "version": {"build_date": "", "build_timestamp": "", "git_sha": "",
                            "git_describe": f"codegeex-ms {version('codegeex-ms')}"}}

    @app.post("/v1/events")
    async def tabby_events(request: Request):
        """Tabby's telemetry events: accepted, not kept."""
        return {}
