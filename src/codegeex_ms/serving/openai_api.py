"""OpenAI's completions API: ``POST /v1/completions`` (plain or streamed as server-sent events; its Tabby form is
told apart by ``segments``), and ``/v1/chat/completions`` answered with why there is none."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..generation import SamplingConfig
from ..languages import language_tag
from .engine import ClientError, Engine, JobStream, request_language, wait_for


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str | list[str] | list[int] | list[list[int]]      # a text, texts, token ids or lists of them
    model: str | None = None
    max_tokens: int = 16
    temperature: float = Field(1.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, ge=0.0, le=1.0)
    top_k: int = Field(0, ge=0)                     # extension: 0 = off
    n: int = 1
    stop: str | list[str] | None = None
    stream: bool = False
    seed: int | None = None
    language: str | None = None                     # extension: the per-language stop rule and cleanup
    user: str | None = None
    # standard OpenAI fields that clients send at their neutral values (Tabby's backend: suffix null and
    # presence_penalty 0; Continue: penalties): accepted there, a named 400 for what this model cannot do
    suffix: str | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    best_of: int | None = None
    echo: bool = False
    logprobs: int | None = None
    stream_options: dict | None = None

    def refuse_unsupported(self) -> None:
        """A 400 naming the field for every non-neutral value of the standard fields this server does not do."""
        if self.suffix:
            raise ClientError("suffix: CodeGeeX-1 has no fill-in-the-middle training: send the prefix only "
                              "(suffix null or empty)", "suffix")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name) != 0:
                raise ClientError(f"{name}: this server applies no repetition penalties: send 0 or leave it out", name)
        if self.best_of not in (None, 1):
            raise ClientError("best_of: this server returns every sample it draws: use n instead", "best_of")
        if self.echo:
            raise ClientError("echo: this server does not repeat the prompt in its answer: send false", "echo")
        if self.logprobs:
            raise ClientError("logprobs: this server returns no log-probabilities: send null or 0", "logprobs")
        unknown = set(self.stream_options or {}) - {"include_usage"}
        if unknown:
            raise ClientError(f"stream_options: only include_usage is supported, got {sorted(unknown)}",
                              "stream_options")

def _refuse_ollama_body(raw: dict) -> None:
    """Ollama's body (Twinny's openai-compatible provider) gets a 400 naming it, not a 422 on its fields."""
    if "options" in raw or "keep_alive" in raw:
        raise ClientError("this is Ollama's request shape (options, keep_alive); this server speaks OpenAI's: "
                          "send max_tokens and temperature at the top level (Twinny: the lmstudio provider)",
                          "options" if "options" in raw else "keep_alive")


def add_openai_routes(app: FastAPI, engine: Engine) -> None:
    """POST /v1/completions, plain or streamed as server-sent events."""
    @app.post("/v1/completions")
    async def completions(request: Request, raw: dict = Body(...)):
        if "segments" in raw:               # Tabby's form of this path (its IDE plugins' tabby-agent)
            from .tabby import TabbyRequest, tabby_completion
            return await tabby_completion(engine, _validated(TabbyRequest, raw), request)
        _refuse_ollama_body(raw)
        body = _validated(CompletionRequest, raw)
        if body.model not in (None, engine.model_name):
            raise ClientError(f"model {body.model!r} is not served here; GET /v1/models lists {engine.model_name!r}",
                              "model", 404)
        body.refuse_unsupported()
        named = body.language or engine.default_language
        language = request_language(named, "language") if named else None
        if engine.tag_language and language:
            body.prompt = _tagged(body.prompt, language)
        prompt_ids = _prompt_ids(engine, body)
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        seed = body.seed if body.seed is not None else uuid.uuid4().int % 2**32
        cfg = SamplingConfig(max_new_tokens=body.max_tokens, greedy=body.temperature == 0,
                             temperature=body.temperature or 1.0, top_p=body.top_p, top_k=body.top_k,
                             seed=seed, stop=stop, language=language)
        cid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        n = body.n

        def finish(reason):
            return "length" if reason == "length" else "stop"

        def usage(results):
            prompt_tokens = sum(len(ids) for ids in prompt_ids)
            generated = sum(len(t) for result in results for t in result.token_ids)
            return {"prompt_tokens": prompt_tokens, "completion_tokens": generated,
                    "total_tokens": prompt_tokens + generated}

        if body.stream:
            shared: asyncio.Queue = asyncio.Queue()
            jobs = [engine.submit(ids, cfg, n, stream=shared, offset=p * n) for p, ids in enumerate(prompt_ids)]

            async def events():
                try:
                    ended = 0
                    while ended < len(jobs):
                        item = await shared.get()
                        if item is None:
                            ended += 1
                            continue
                        index, text, _ = item
                        chunk = {"id": cid, "object": "text_completion", "created": created,
                                 "model": engine.model_name,
                                 "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": None}]}
                        yield f"data: {json.dumps(chunk)}\n\n"
                    results = [job.done.result()[0] for job in jobs]
                    for job, result in zip(jobs, results):
                        for i, reason in enumerate(result.finish_reasons):
                            chunk = {"id": cid, "object": "text_completion", "created": created,
                                     "model": engine.model_name,
                                     "choices": [{"text": "", "index": job.offset + i, "logprobs": None,
                                                  "finish_reason": finish(reason)}]}
                            yield f"data: {json.dumps(chunk)}\n\n"
                    if (body.stream_options or {}).get("include_usage"):     # OpenAI: a last chunk, no choices
                        chunk = {"id": cid, "object": "text_completion", "created": created,
                                 "model": engine.model_name, "choices": [], "usage": usage(results)}
                        yield f"data: {json.dumps(chunk)}\n\n"
                    yield "data: [DONE]\n\n"
                finally:
                    for job in jobs:
                        engine.finish(job)            # also when the client went away mid-stream

            return JobStream(events(), engine, jobs, media_type="text/event-stream")

        jobs = [engine.submit(ids, cfg, n) for ids in prompt_ids]       # decoded together (continuous batching)
        results = [(await wait_for(engine, job, request))[0] for job in jobs]
        return {"id": cid, "object": "text_completion", "created": created, "model": engine.model_name,
                "choices": [{"text": text, "index": p * n + i, "logprobs": None, "finish_reason": finish(reason)}
                            for p, result in enumerate(results)
                            for i, (text, reason) in enumerate(zip(result.completions, result.finish_reasons))],
                "usage": usage(results)}

def _tagged(prompt, language: str):
    """Text prompts with the language's tag line in front, as CodeGeeX was trained (unless already there); token-id
    prompts as they are."""
    tag = language_tag(language) + "\n"
    if isinstance(prompt, str):
        return prompt if prompt.startswith(tag) else tag + prompt
    return [_tagged(p, language) if isinstance(p, str) else p for p in prompt]

def _validated(model: type[BaseModel], raw: dict):
    """``raw`` as ``model``, its errors answered as FastAPI's own body validation errors are."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from None

def add_chat_route(app: FastAPI) -> None:
    @app.post("/v1/chat/completions")
    async def chat():
        """Clients that try chat first get told why there is none, instead of a bare 404."""
        raise ClientError("CodeGeeX-1 is not chat- or instruction-tuned, so this server has no chat completions: "
                          "send a code prefix to /v1/completions", None, 400)

def _prompt_ids(engine: Engine, body: CompletionRequest) -> list[list[int]]:
    """The request's prompts as token ids, each checked against the limits: a text, a list of texts, a list of
    token ids (one prompt) or a list of such lists, as OpenAI's completions API takes them."""
    prompt = body.prompt
    if isinstance(prompt, str):
        return [engine.check(prompt, body.max_tokens, body.n)]
    if not prompt:
        raise ClientError("prompt must not be empty", "prompt")
    if all(isinstance(p, int) for p in prompt):
        return [engine.check_ids(list(prompt), body.max_tokens, body.n)]
    if len(prompt) > engine.limits.max_prompts:
        raise ClientError(f"this server takes at most {engine.limits.max_prompts} prompts per request, got "
                          f"{len(prompt)}", "prompt")
    return [engine.check(p, body.max_tokens, body.n) if isinstance(p, str) else
            engine.check_ids(list(p), body.max_tokens, body.n, f"prompt[{i}]") for i, p in enumerate(prompt)]
