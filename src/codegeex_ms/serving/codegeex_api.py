"""The CodeGeeX VS Code extension's endpoints (``/multilingual_code_*``) and the task prompts they and ``/v1/prompt``
build."""
from __future__ import annotations

import time
import uuid
from typing import Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from ..generation import SamplingConfig
from .. import prompts
from .engine import ClientError, Engine, request_language, wait_for


class CodeGeeXRequest(BaseModel):
    """The CodeGeeX VS Code extension's generation payload (its _adapt and _block calls leave ``lang`` out when
    the editor's language is unknown)."""
    model_config = ConfigDict(extra="forbid")
    prompt: str
    n: int = 1
    lang: str | None = None
    temperature: float = Field(0.8, gt=0.0, le=5.0)
    top_p: float = Field(0.95, ge=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    stop: list[str] = []
    max_tokens: int | None = None        # the extension sends none: 128, or the server's limit if lower
    seed: int | None = None
    userid: str | None = None
    apikey: str | None = None
    apisecret: str | None = None

class CodeGeeXTranslateRequest(CodeGeeXRequest):
    lang: Literal[None] = None                       # translation names src_lang and dst_lang instead
    src_lang: str
    dst_lang: str

def task_prompt(task: str, code: str, language: str | None = None, src_lang: str | None = None,
            dst_lang: str | None = None, lang_param: str = "language") -> prompts.Prompt:
    """prompts.build with the request's field names in its errors."""
    missing = {"translate": [("src_lang", src_lang), ("dst_lang", dst_lang)],
               "explain": [(lang_param, language)]}.get(task, [])
    for name, value in missing:
        if not value:
            raise ClientError(f"{name}: required for {task}", name)
    checked = {lang_param: language, "src_lang": src_lang, "dst_lang": dst_lang}
    for name, value in checked.items():
        if value:
            request_language(value, name)
    return prompts.build(task, code, language=language, src_language=src_lang, tgt_language=dst_lang)

def add_codegeex_routes(app: FastAPI, engine: Engine) -> None:
    """The CodeGeeX extension's endpoints: generate (line by line), generate_block, generate_adapt, translate,
    explain."""
    async def codegeex(body: CodeGeeXRequest, prompt: prompts.Prompt, request: Request):
        """Answer a CodeGeeX endpoint; every result starts with the prompt's ``lead``."""
        max_tokens = body.max_tokens if body.max_tokens is not None else min(128, engine.limits.max_new_tokens)
        ids = engine.check(prompt.text, max_tokens, body.n)
        cfg = SamplingConfig(max_new_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                             top_k=body.top_k, seed=body.seed if body.seed is not None else uuid.uuid4().int % 2**32,
                             stop=list(body.stop) + list(prompt.stop), language=prompt.language)
        start = time.monotonic()
        result, _ = await wait_for(engine, engine.submit(ids, cfg, body.n), request)
        return {"status": 0, "message": "success",
                "result": {"output": {"code": [prompt.lead + text for text in result.completions]},
                           "process_time": round(time.monotonic() - start, 3)}}

    @app.post("/multilingual_code_generate")
    async def generate(body: CodeGeeXRequest, request: Request):
        if not body.lang:
            raise ClientError("lang: required for generate", "lang")
        return await codegeex(body, task_prompt("complete", body.prompt, body.lang, lang_param="lang"), request)

    # the extension's other two generation calls: the same left-to-right completion with their own stop policies
    @app.post("/multilingual_code_generate_block")
    async def generate_block(body: CodeGeeXRequest, request: Request):
        """Prompt mode: a whole block (the language's function-body rule; without ``lang``, up to the length)."""
        return await codegeex(body, task_prompt("complete", body.prompt, body.lang, lang_param="lang"), request)

    @app.post("/multilingual_code_generate_adapt")
    async def generate_adapt(body: CodeGeeXRequest, request: Request):
        """Automatic and interactive modes: the rest of the line when the cursor follows code on its line, else a
        block, as ``_block``."""
        prompt = task_prompt("complete", body.prompt, body.lang, lang_param="lang")
        if body.prompt[body.prompt.rfind("\n") + 1:].strip():
            prompt = prompts.Prompt(prompt.text, prompt.language, tuple(prompt.stop) + ("\n",), prompt.lead)
        return await codegeex(body, prompt, request)

    @app.post("/multilingual_code_translate")
    async def translation(body: CodeGeeXTranslateRequest, request: Request):
        prompt = task_prompt("translate", body.prompt, src_lang=body.src_lang, dst_lang=body.dst_lang)
        return await codegeex(body, prompt, request)

    @app.post("/multilingual_code_explain")
    async def explanation(body: CodeGeeXRequest, request: Request):
        if not body.lang:
            raise ClientError("lang: required for explain", "lang")
        return await codegeex(body, task_prompt("explain", body.prompt, body.lang, lang_param="lang"), request)
