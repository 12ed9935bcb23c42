"""An HTTP server for IDE extensions: OpenAI-style completions, the CodeGeeX extension's endpoints, a playground page.

One engine thread owns the model and runs ``Generator.run``, continuous batching: requests wait in a queue, and
whenever a row of the decode batch (``batch_size`` rows) is free the next waiting sample takes it at the next
decode step (a request with ``n`` samples takes up to ``n`` rows; its samples that start together share one
prefill). Each sample keeps its own prompt, position, sampling settings, seeded noise and stop rules, so what
shares the batch does not change any request's output. A request whose client went away stops at the next token.
With an exported MindIR graph (one engine, no cache copy) new requests start only when every row is free. Built on
FastAPI + uvicorn.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

from importlib import resources

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .generation import GenerationResult, SamplingConfig
from .languages import LANGUAGE_TAGS, UnknownLanguageError, canonical_language, language_tag
from . import prompts


@dataclass(frozen=True)
class RequestLimits:
    max_prompt_tokens: int = 1024
    max_new_tokens: int = 512
    max_n: int = 8
    max_prompts: int = 32               # prompts in one /v1/completions request (a list prompt)


class ClientError(ValueError):
    """A request the server refuses: HTTP ``status`` with a message naming the field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status


@dataclass
class Job:
    prompt_ids: list[int]
    cfg: SamplingConfig
    n: int
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future
    stream: asyncio.Queue | None = None
    cancelled: bool = False
    released: bool = False
    created: float = field(default_factory=time.monotonic)
    offset: int = 0                                    # its first choice index in a request of several prompts
    started: int = 0                                   # samples handed to the engine so far
    rows: dict = field(default_factory=dict)           # sample index -> its finished row


class Engine:
    """The model behind a queue; ``submit`` from the event loop, results come back as futures."""

    def __init__(self, generator, tokenizer, model_name: str, limits: RequestLimits = RequestLimits(),
                 tag_language: bool = False, default_language: str | None = None):
        """``tag_language``: /v1/completions text prompts of a known language get its tag line in front (unless
        they start with it); ``default_language``: the language of /v1/completions requests that name none."""
        self.generator, self.tokenizer, self.model_name = generator, tokenizer, model_name
        self.limits = limits
        self.tag_language, self.default_language = tag_language, default_language
        self.context = generator.max_len
        model = getattr(generator.cached, "model", None)          # an exported graph has none: the tokenizer's
        self.vocab_size = model.config.model.vocab_size if model is not None else tokenizer.vocab_size
        self.queue: queue.Queue = queue.Queue()
        self.stats = {"requests": 0, "prefills": 0, "decode_steps": 0, "tokens": 0, "cancelled": 0, "in_flight": 0}
        self._partial: Job | None = None               # a job whose samples did not all fit the free rows
        self._running: list[Job] = []                  # jobs with samples in the engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self._thread.start()

    def check(self, prompt: str, max_new_tokens: int, n: int) -> list[int]:
        """A text prompt's token ids, checked against the limits."""
        if not prompt:
            raise ClientError("prompt must not be empty", "prompt")
        return self.check_ids(self.tokenizer.encode(prompt), max_new_tokens, n)

    def check_ids(self, ids: list[int], max_new_tokens: int, n: int, param: str = "prompt") -> list[int]:
        """A token-id prompt against the limits (``check`` tokenizes a text one first)."""
        if not ids:
            raise ClientError(f"{param} must not be empty", param)
        if not 1 <= n <= self.limits.max_n:
            raise ClientError(f"n must be in 1..{self.limits.max_n}, got {n}", "n")
        if not 1 <= max_new_tokens <= self.limits.max_new_tokens:
            raise ClientError(f"max_tokens must be in 1..{self.limits.max_new_tokens}, got {max_new_tokens}",
                              "max_tokens")
        bad = next((t for t in ids if not 0 <= t < self.vocab_size), None)
        if bad is not None:
            raise ClientError(f"{param}: token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})", param)
        if len(ids) > self.limits.max_prompt_tokens:
            raise ClientError(f"the prompt is {len(ids)} tokens; this server accepts at most "
                              f"{self.limits.max_prompt_tokens}", "prompt")
        if len(ids) + max_new_tokens > self.context:
            raise ClientError(f"prompt ({len(ids)} tokens) + max_tokens ({max_new_tokens}) exceeds the model's "
                              f"context of {self.context} tokens", "max_tokens")
        return ids

    def submit(self, ids: list[int], cfg: SamplingConfig, n: int, stream: bool | asyncio.Queue = False,
               offset: int = 0) -> Job:
        """Queue a job; ``stream``: True for a queue of its own, or a queue shared with other jobs of one request
        (its items are (``offset`` + sample, text), then None when the job ends)."""
        loop = asyncio.get_running_loop()
        queue_ = stream if isinstance(stream, asyncio.Queue) else asyncio.Queue() if stream else None
        job = Job(ids, cfg, n, loop, loop.create_future(), queue_, offset=offset)
        self.stats["requests"] += 1
        self.stats["in_flight"] += 1
        self.queue.put(job)
        return job

    def finish(self, job: Job) -> None:
        """The client is done with ``job`` (answered, disconnected or failed): if its result is not in yet,
        its rows stop at the next token. Counted once per job, whatever path the request took."""
        if job.released:
            return
        job.released = True
        self.stats["in_flight"] -= 1
        if not job.done.done():
            job.cancelled = True
            self.stats["cancelled"] += 1

    def _pull(self, free: int, busy: bool):
        """The engine's source of work (``Generator.run``): samples of waiting jobs for up to ``free`` rows; blocks
        for the next request only while no row is decoding; None once the server closes and nothing is left."""
        from .generation import Work
        self._running = [job for job in self._running if not job.cancelled and not job.done.done()]
        works = []
        while free > 0:
            job, self._partial = self._partial, None
            if job is None:
                try:
                    job = self.queue.get(block=not busy and not works and not self._stop.is_set())
                except queue.Empty:
                    break
                if job is None:                        # close(): finish what was queued before, take nothing more
                    self._stop.set()
                    break
            if job.cancelled:                          # its client went away before all its samples started
                continue
            k = min(free, job.n - job.started)
            works.append(Work(job, job.prompt_ids, job.cfg, list(range(job.started, job.started + k))))
            if job.started == 0:
                self._running.append(job)
            job.started += k
            free -= k
            if job.started < job.n:
                self._partial = job
        if not works and not busy and self._stop.is_set():
            return None
        return works

    def _on_text(self, job: Job, sample: int, text: str, token: int) -> None:
        if job.stream is not None:
            job.loop.call_soon_threadsafe(job.stream.put_nowait, (job.offset + sample, text, token))

    def _on_done(self, row) -> None:
        job = row.key
        job.rows[row.sample] = row
        self.stats["tokens"] += len(row.tokens)
        if len(job.rows) == job.n:
            rows = [job.rows[i] for i in range(job.n)]
            result = GenerationResult([r.completion() for r in rows], [r.text for r in rows],
                                      [r.tokens for r in rows], [str(r.reason) for r in rows], len(job.prompt_ids),
                                      {"generated_tokens": sum(len(r.tokens) for r in rows)})
            job.loop.call_soon_threadsafe(_settle, job, (result, time.monotonic() - job.created))

    def _run(self):
        while not self._stop.is_set() or self._partial is not None:
            try:
                self.generator.run(self._pull, self._on_text, self._on_done, lambda job: job.cancelled,
                                   stats=self.stats)
            except Exception as e:  # noqa: BLE001 - reported to every client whose samples were in the engine
                for job in self._running + ([self._partial] if self._partial else []):
                    job.loop.call_soon_threadsafe(_settle, job, e)
                self._running, self._partial = [], None

    def close(self, timeout: float = 60.0):
        """Finish the queued and running work, then stop the engine thread."""
        self.queue.put(None)
        self._thread.join(timeout)


def _settle(job: Job, value):
    if job.done.done():
        return
    if isinstance(value, Exception):
        job.done.set_exception(value)
    else:
        job.done.set_result(value)
    if job.stream is not None:
        job.stream.put_nowait(None)


# ---------------------------------------------------------------------------------------------------------
# Request bodies (unknown fields are refused with 422)

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


class PromptRequest(BaseModel):
    """A task to turn into a prompt: what the playground and the VS Code extension's OpenAI mode ask first."""
    model_config = ConfigDict(extra="forbid")
    task: Literal["complete", "translate", "explain"]
    code: str
    language: str | None = None                      # complete (optional) and explain: the code's language
    src_lang: str | None = None                      # translate
    dst_lang: str | None = None                      # translate


# pages and probes a browser or load balancer reaches without the API key (GET only: POST / is TGI's API)
OPEN_PATHS = ("/", "/health")


def _language(name: str, param: str) -> str:
    try:
        return canonical_language(name)
    except UnknownLanguageError as e:
        raise ClientError(str(e), param) from None


def _prompt(task: str, code: str, language: str | None = None, src_lang: str | None = None,
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
            _language(value, name)
    return prompts.build(task, code, language=language, src_language=src_lang, tgt_language=dst_lang)


def create_app(engine: Engine, api_key: str | None = None, cors_origins: tuple[str, ...] = ()) -> FastAPI:
    """The FastAPI app. ``cors_origins``: web origins allowed to call the API from a browser (the playground page
    is same-origin and needs none; VS Code for the web runs extensions in the browser and does)."""
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        # uvicorn has stopped accepting and the in-flight requests are answered: drain the engine
        await asyncio.to_thread(engine.close)
        print(f"engine stopped after {engine.stats['requests']} requests ({engine.stats['tokens']} tokens in "
              f"{engine.stats['decode_steps']} decode steps)", flush=True)

    app = FastAPI(title="codegeex-ms", version="1", docs_url=None, redoc_url=None, lifespan=lifespan)
    _error_handlers(app)
    _access_control(app, api_key, cors_origins)
    _page_and_info_routes(app, engine, api_key)
    _openai_routes(app, engine)
    _chat_route(app)
    _codegeex_routes(app, engine)
    from .serving_tabby import add_tabby_routes
    from .serving_tgi import add_tgi_routes
    add_tgi_routes(app, engine)
    add_tabby_routes(app, engine)
    return app


def _openai_error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status)


def _error_handlers(app: FastAPI) -> None:
    """Validation errors and ClientErrors as the OpenAI error shape, or the CodeGeeX or TGI endpoints' own."""
    from .serving_tgi import error_body as tgi_error, is_tgi
    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
        if first.get("type") == "json_invalid":
            # loc is ("body", <character offset>): the offset is not a field
            offset = next((p for p in first.get("loc", ()) if isinstance(p, int)), None)
            message = "the request body is not valid JSON" + (f" (at character {offset})" if offset is not None else "")
            where, status = None, 400
        elif first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body",):
            where, message, status = None, "the request body is empty; send a JSON object", 400
        else:
            where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
            message = f"{where}: {first['msg']}" if where else first["msg"]
            status = 422
        if request.url.path.startswith("/multilingual"):
            return JSONResponse({"status": 1, "message": message}, status)
        if is_tgi(request):
            return JSONResponse(tgi_error(message), 422 if status == 422 else status)
        return _openai_error(status, message, where or None)

    @app.exception_handler(ClientError)
    async def client_error(request: Request, exc: ClientError):
        if request.url.path.startswith("/multilingual"):
            return JSONResponse({"status": 1, "message": str(exc)}, exc.status)
        if is_tgi(request):
            return JSONResponse(tgi_error(str(exc)), exc.status)
        return _openai_error(exc.status, str(exc), exc.param)


def _access_control(app: FastAPI, api_key: str | None, cors_origins: tuple[str, ...]) -> None:
    """The API key check (everything but GET of OPEN_PATHS and preflights), wrapped by CORS when origins are
    given."""
    from .serving_tgi import is_tgi
    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        opened = request.url.path in OPEN_PATHS and request.method == "GET"
        if api_key and not opened and request.method != "OPTIONS":
            header = request.headers.get("authorization", "")
            body_key = None
            if request.url.path.startswith("/multilingual"):
                try:
                    body_key = json.loads(await request.body() or b"{}").get("apikey")
                except (ValueError, AttributeError):
                    body_key = None
            if header != f"Bearer {api_key}" and body_key != api_key:
                if request.url.path.startswith("/multilingual"):     # the CodeGeeX endpoints' own error shape
                    return JSONResponse({"status": 1, "message": "missing or wrong API key (apikey field or "
                                                                 "Authorization: Bearer KEY)"}, 401)
                if is_tgi(request):
                    return JSONResponse({"error": "missing or wrong API key (Authorization: Bearer KEY)",
                                         "error_type": "authentication"}, 401)
                return _openai_error(401, "missing or wrong API key (Authorization: Bearer KEY)", None,
                                    "authentication_error")
        return await call_next(request)

    if cors_origins:
        # added after the auth middleware, so it wraps it: preflights are answered before any key check, and
        # 401 answers carry the CORS headers a browser needs to show them
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])


def _page_and_info_routes(app: FastAPI, engine: Engine, api_key: str | None) -> None:
    """GET / (the playground), GET /health, GET /v1/models, POST /v1/prompt."""
    @app.get("/", response_class=HTMLResponse)
    async def playground():
        return HTMLResponse(PLAYGROUND_HTML)

    @app.get("/health")
    async def health():
        limits = {"max_prompt_tokens": engine.limits.max_prompt_tokens,
                  "max_new_tokens": engine.limits.max_new_tokens, "max_n": engine.limits.max_n}
        return {"status": "ok", "model": engine.model_name, "queued": engine.queue.qsize(), "auth": bool(api_key),
                "context": engine.context, "limits": limits, "languages": sorted(LANGUAGE_TAGS, key=str.lower),
                **engine.stats}

    @app.post("/v1/prompt")
    async def prompt(body: PromptRequest):
        built = _prompt(body.task, body.code, body.language, body.src_lang, body.dst_lang)
        return {"prompt": built.text, "language": built.language, "stop": list(built.stop), "lead": built.lead}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": engine.model_name, "object": "model", "created": 0,
                                            "owned_by": "codegeex-ms"}]}


class _JobStream(StreamingResponse):
    """A streamed job's response that releases the job however the response ends. When the client goes away,
    Starlette cancels the streaming; if that lands while a chunk is being sent, the event generator stays suspended
    at its ``yield`` and its ``finally`` waits for the garbage collector, so the job would keep its rows until it
    ends. (In one full test run 2 of 4 hung-up requests were still in flight a minute later; this is the path we
    found that can do it. It did not recur in 5 runs of that test alone, with or without this class.)"""

    def __init__(self, content, engine: Engine, jobs: list[Job], **kwargs):
        super().__init__(content, **kwargs)
        self.engine, self.jobs = engine, jobs

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            for job in self.jobs:
                self.engine.finish(job)


async def _wait(engine: Engine, job: Job, request: Request):
    """The job's result; if the client disconnects first, cancel the job."""
    try:
        while True:
            done, _ = await asyncio.wait({job.done}, timeout=0.1)
            if done:
                return job.done.result()
            if await request.is_disconnected():
                raise asyncio.CancelledError
    finally:
        engine.finish(job)


def _openai_routes(app: FastAPI, engine: Engine) -> None:
    """POST /v1/completions, plain or streamed as server-sent events."""
    @app.post("/v1/completions")
    async def completions(request: Request, raw: dict = Body(...)):
        if "segments" in raw:               # Tabby's form of this path (its IDE plugins' tabby-agent)
            from .serving_tabby import TabbyRequest, tabby_completion
            return await tabby_completion(engine, _validated(TabbyRequest, raw), request)
        if "options" in raw or "keep_alive" in raw:   # Ollama's body (Twinny's openai-compatible provider)
            raise ClientError("this is Ollama's request shape (options, keep_alive); this server speaks OpenAI's: "
                              "send max_tokens and temperature at the top level (Twinny: the lmstudio provider)",
                              "options" if "options" in raw else "keep_alive")
        body = _validated(CompletionRequest, raw)
        if body.model not in (None, engine.model_name):
            raise ClientError(f"model {body.model!r} is not served here; GET /v1/models lists {engine.model_name!r}",
                              "model", 404)
        body.refuse_unsupported()
        named = body.language or engine.default_language
        language = _language(named, "language") if named else None
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

            return _JobStream(events(), engine, jobs, media_type="text/event-stream")

        jobs = [engine.submit(ids, cfg, n) for ids in prompt_ids]       # decoded together (continuous batching)
        results = [(await _wait(engine, job, request))[0] for job in jobs]
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


def _chat_route(app: FastAPI) -> None:
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


def _codegeex_routes(app: FastAPI, engine: Engine) -> None:
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
        result, _ = await _wait(engine, engine.submit(ids, cfg, body.n), request)
        return {"status": 0, "message": "success",
                "result": {"output": {"code": [prompt.lead + text for text in result.completions]},
                           "process_time": round(time.monotonic() - start, 3)}}

    @app.post("/multilingual_code_generate")
    async def generate(body: CodeGeeXRequest, request: Request):
        if not body.lang:
            raise ClientError("lang: required for generate", "lang")
        return await codegeex(body, _prompt("complete", body.prompt, body.lang, lang_param="lang"), request)

    # the extension's other two generation calls: the same left-to-right completion with their own stop policies
    @app.post("/multilingual_code_generate_block")
    async def generate_block(body: CodeGeeXRequest, request: Request):
        """Prompt mode: a whole block (the language's function-body rule; without ``lang``, up to the length)."""
        return await codegeex(body, _prompt("complete", body.prompt, body.lang, lang_param="lang"), request)

    @app.post("/multilingual_code_generate_adapt")
    async def generate_adapt(body: CodeGeeXRequest, request: Request):
        """Automatic and interactive modes: the rest of the line when the cursor follows code on its line, else a
        block, as ``_block``."""
        prompt = _prompt("complete", body.prompt, body.lang, lang_param="lang")
        if body.prompt[body.prompt.rfind("\n") + 1:].strip():
            prompt = prompts.Prompt(prompt.text, prompt.language, tuple(prompt.stop) + ("\n",), prompt.lead)
        return await codegeex(body, prompt, request)

    @app.post("/multilingual_code_translate")
    async def translation(body: CodeGeeXTranslateRequest, request: Request):
        return await codegeex(body, _prompt("translate", body.prompt, src_lang=body.src_lang, dst_lang=body.dst_lang),
                              request)

    @app.post("/multilingual_code_explain")
    async def explanation(body: CodeGeeXRequest, request: Request):
        if not body.lang:
            raise ClientError("lang: required for explain", "lang")
        return await codegeex(body, _prompt("explain", body.prompt, body.lang, lang_param="lang"), request)


PLAYGROUND_HTML = resources.files(__package__).joinpath("playground.html").read_text(encoding="utf-8")
