"""The engine behind the server: one thread owns the model and runs ``Generator.run`` (continuous batching);
requests are jobs submitted from the event loop, answered through futures and, when streamed, queues."""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import StreamingResponse

from ..generation import GenerationResult, SamplingConfig, Work
from ..languages import UnknownLanguageError, canonical_language


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
        (its items are (``offset`` + sample, text, token), then None when the job ends)."""
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
            if job.started == 0:                      # tracked first: a failure from here on reaches its client
                self._running.append(job)
            k = min(free, job.n - job.started)
            works.append(Work(job, job.prompt_ids, job.cfg, list(range(job.started, job.started + k))))
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
            job.loop.call_soon_threadsafe(settle, job, (result, time.monotonic() - job.created))

    def _run(self):
        while not self._stop.is_set() or self._partial is not None:
            try:
                self.generator.run(self._pull, self._on_text, self._on_done, lambda job: job.cancelled,
                                   stats=self.stats)
            except Exception as e:  # noqa: BLE001 - reported to every client whose samples were in the engine
                for job in self._running + ([self._partial] if self._partial else []):
                    job.loop.call_soon_threadsafe(settle, job, e)
                self._running, self._partial = [], None

    def close(self, timeout: float = 60.0):
        """Finish the queued and running work, then stop the engine thread."""
        self.queue.put(None)
        self._thread.join(timeout)

def settle(job: Job, value):
    if job.done.done():
        return
    if isinstance(value, Exception):
        job.done.set_exception(value)
    else:
        job.done.set_result(value)
    if job.stream is not None:
        job.stream.put_nowait(None)

class JobStream(StreamingResponse):
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

async def wait_for(engine: Engine, job: Job, request: Request):
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

def request_language(name: str, param: str) -> str:
    try:
        return canonical_language(name)
    except UnknownLanguageError as e:
        raise ClientError(str(e), param) from None
