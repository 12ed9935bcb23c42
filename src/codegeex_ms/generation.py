"""Generation with a static KV cache, continuous batching and per-sample seeds, gpt-fast style.

    generator = Generator(model, tokenizer, batch_size=4, max_len=512)
    result = generator.generate(tokenizer.encode(prompt), SamplingConfig(temperature=0.8, top_p=0.95))

The decode engine's cache (one key and one value Parameter ``[batch, heads, max_len, head_dim]`` per layer, 40 for
the 13B model) is allocated once. A step writes its keys/values at each row's position and attends over the whole
cache with a mask, so every decode step has the same shapes: the decode graph is compiled once and reused for
every token. ``Generator.run`` keeps ``batch_size`` rows decoding; a row whose sample stops takes the next waiting
sample at the next step. A new prompt is prefilled in an engine of its own with a one-row cache, in chunks of at
most ``PREFILL_CHUNK`` tokens (each chunk appends its keys and values), each right-padded to a bucket
(``PREFILL_BUCKET`` = 16 tokens doubled until it fits: 16, 32, 64, 128, 256), so any prompt length runs through 5
prefill graphs; the padding writes cache rows that later tokens overwrite before anyone attends to them. The
prefilled row is then copied into each new sample's row of the decode cache (``CacheRowCopy``): the samples of a
prompt share one prefill. Chunks bound the prefill's memory: a MindSpore CPU graph keeps every layer's attention
scores ``[batch, heads, tokens, cache]`` alive at once, so one whole long prompt took many times the model's
weights in memory (bench/README.md, "Measurements behind design choices"). Every sample draws its noise from a
generator seeded by its own identity (``sample_rng``: seed, sample index), so its tokens do not depend on the
batch size or its neighbours.

Sampling runs in the graph (temperature, top-k, top-p over the ``candidates`` highest logits, Gumbel-max
with noise drawn on the host from a seeded numpy generator), so only token ids come back to the host.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn

# the graphs this engine drives, also importable from here (their callers predate the split)
from .generation_graphs import (  # noqa: F401
    CACHE_GRANULE, DEFAULT_CANDIDATES, PREFILL_BUCKET, PREFILL_CHUNK, CachedCodeGeeX, CacheRowCopy, FusedDecodeStep,
    FusedPrefillStep, Sampler, cache_length, prefill_bucket)
from .model import CodeGeeX
from .stopping import cleanup, has_stop_rule, is_finished

_GREEDY_NOISE = math.exp(-1.0)      # Gumbel noise -log(-log(u)) is 0 for u = 1/e: argmax of the logits


@dataclass
class SamplingConfig:
    """How to pick tokens and when to stop. ``top_k`` 0 and ``top_p`` 0 or 1 mean off (as the original)."""
    max_new_tokens: int = 128
    greedy: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    stop: Sequence[str] = ()
    language: str | None = None          # picks the per-language stop rule and cleanup (stopping.py)

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.greedy and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (use greedy for argmax), got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 <= self.top_p <= 1:
            raise ValueError(f"top_p must be in [0, 1], got {self.top_p}")


@dataclass
class GenerationResult:
    completions: list[str]                 # cleaned text of each sample
    raw_completions: list[str]             # text as generated, before stop handling
    token_ids: list[list[int]]             # generated ids (EOS excluded)
    finish_reasons: list[str]              # "eos", "stop", "rule" or "length"
    prompt_tokens: int
    timings: dict = field(default_factory=dict)


def sample_rng(seed: int, sample: int) -> np.random.Generator:
    """The noise generator of sample ``sample`` of a request seeded ``seed``: seeded by the sample's own identity,
    never by its place in a batch, so a sample is the same whatever batch size, co-batched requests or shard
    computed it (with the CPU kernels bit for bit; elsewhere up to the device's matmul summation order)."""
    return np.random.default_rng([seed % 2**64, sample])


class _Row:
    """One sample while it decodes: its tokens, text, noise generator, cache position, and why it stopped (None
    while it runs)."""

    def __init__(self, key, sample: int, cfg: SamplingConfig, decoder, candidates: int, position: int):
        self.key, self.sample, self.cfg, self.decoder = key, sample, cfg, decoder
        self.has_rule = has_stop_rule(cfg.language)
        self.rng = None if cfg.greedy else sample_rng(cfg.seed, sample)
        self.candidates, self.position = candidates, position
        self.tokens: list[int] = []
        self.text = ""
        self.reason: str | None = None

    def noise(self) -> np.ndarray:
        """The uniform noise of this sample's next token [candidates] (greedy: the noise that keeps the argmax)."""
        if self.rng is None:
            return np.full(self.candidates, _GREEDY_NOISE, np.float32)
        return np.clip(self.rng.random(self.candidates, dtype=np.float32), 1e-12, 1 - 1e-7)

    def take(self, token: int, eos_id: int) -> str:
        """Add the sampled ``token``; returns the new text, and sets ``reason`` when the row is done: EOS, a stop
        string, the language's stop rule, or max_new_tokens."""
        if token == eos_id:
            self.reason = "eos"
            self.text += self.decoder.flush()
            return ""
        self.tokens.append(token)
        new = self.decoder.push(token)
        self.text += new
        if any(stop in self.text for stop in self.cfg.stop):
            self.reason = "stop"
        elif self.has_rule and is_finished(self.text, self.cfg.language):
            self.reason = "rule"
        elif len(self.tokens) >= self.cfg.max_new_tokens:
            self.reason = "length"
            self.text += self.decoder.flush()
        return new

    def completion(self) -> str:
        """The text with stop handling applied: cut at the first stop string, or cleaned by the stop rule."""
        if self.reason == "stop":
            return self.text[:min(self.text.find(stop) for stop in self.cfg.stop if stop in self.text)]
        if self.reason == "rule":
            return cleanup(self.text, self.cfg.language)
        return self.text


@dataclass
class Work:
    """Samples of one request to start now: ``samples`` are their indices (each seeds its own noise)."""
    key: object                              # the caller's name for the request
    prompt_ids: Sequence[int]
    cfg: SamplingConfig
    samples: Sequence[int]


class Generator:
    """Continuous batching on a KV-cached model compiled once: ``batch_size`` rows decode together, a row that stops
    takes the next waiting sample at the next step, and the samples of one prompt that start together share one
    prefill.

    Prefill runs in an engine of its own with a one-row cache (chunks of at most ``prefill_chunk`` tokens); the row
    is then copied into each new sample's row of the decode engine's cache (``CacheRowCopy``) and each sample draws
    its first token from the prompt's logits with its own noise. With an exported graph (``step_cell``) there is one
    engine: waiting samples start only when every row is free (static batches), prefilled in that graph.
    """

    def __init__(self, model: CodeGeeX | None, tokenizer, batch_size: int = 1, max_len: int | None = None,
                 candidates: int = DEFAULT_CANDIDATES, prefill_bucket: int = PREFILL_BUCKET,
                 step_cell: nn.Cell | None = None, prefill_chunk: int = PREFILL_CHUNK):
        """``step_cell``: an already built cached step with ``CachedCodeGeeX``'s inputs and output, e.g. an
        exported graph loaded with ``nn.GraphCell`` (then ``model`` is None and ``batch_size``, ``max_len`` and
        ``candidates`` must be the ones it was exported with). ``prefill_chunk``: the most prompt tokens one
        prefill call takes (its memory grows with chunk x cache length)."""
        if prefill_bucket < 1 or prefill_chunk < prefill_bucket:
            raise ValueError(f"prefill_chunk ({prefill_chunk}) must be >= prefill_bucket ({prefill_bucket}) >= 1")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.tokenizer = tokenizer
        if step_cell is None:
            self.max_len = max_len or model.config.model.max_position_embeddings
            self.cached = CachedCodeGeeX(model, batch_size, self.max_len, candidates)
            self.prefill_cached = CachedCodeGeeX(model, 1, self.max_len, candidates, return_logits=True,
                                                 cache_name="prefill_cache")
            self.candidates = self.cached.sampler.candidates
            # each layer one CPU kernel where the model allows it, for decode steps and prefill chunks
            fused = self.cached.fused_decode
            self.decode_cell = FusedDecodeStep(self.cached) if fused else self.cached
            self.prefill_cell = FusedPrefillStep(self.prefill_cached) if fused else self.prefill_cached
            self.copy_cell = CacheRowCopy(self.prefill_cached, self.cached)
            self.first_sampler = Sampler(model.config.model.vocab_size, candidates)
            self.logits_width = model.word_embeddings.weight.shape[0]          # the table's rows, padding included
            self.refills = True
        else:
            self.max_len, self.cached, self.candidates = max_len, step_cell, candidates
            self.decode_cell = self.prefill_cell = step_cell
            self.refills = False
        self.batch_size, self.prefill_bucket, self.prefill_chunk = batch_size, prefill_bucket, prefill_chunk
        self.eos_id = tokenizer.eos_id
        # every distinct (rows, tokens) a step was called with: MindSpore compiles one graph per shape
        self.call_shapes: set[tuple[int, int]] = set()
        self._prefilled = None          # (prompt ids, its logits) while the prefill engine's cache row holds it

    def _bucket(self, length: int) -> int:
        """The padded length of a prefill call for ``length`` remaining prompt tokens: at most one chunk."""
        return min(prefill_bucket(length, self.max_len, self.prefill_bucket), self.prefill_chunk)

    def buckets(self, longest_prompt: int | None = None) -> list[int]:
        """The prefill call lengths that prompts of up to ``longest_prompt`` tokens (default: the whole cache) use:
        the buckets up to one chunk, whatever the prompt length."""
        out, length = [], 1
        while True:
            bucket = self._bucket(length)
            out.append(bucket)
            if bucket >= min(longest_prompt or self.max_len, self.max_len, self.prefill_chunk):
                return out
            length = bucket + 1

    def _prefill(self, prompts: Sequence[Sequence[int]], noise: np.ndarray,
                 cfgs: Sequence[SamplingConfig]) -> np.ndarray:
        """Write every row's prompt into the prefill cell's cache, one chunk of positions at a time, and return what
        the call that holds each row's last prompt token returned for it: the sampled token ([b]; an exported graph)
        or the logits ([b, V]; the prefill engine). All calls get the same noise, so a sample is the one a single
        whole-prompt call would draw."""
        b = len(prompts)
        lengths = np.array([len(p) for p in prompts], np.int32)
        longest = int(lengths.max())
        tokens = np.full((b, max(longest, self.max_len)), self.eos_id, np.int32)
        for i, prompt in enumerate(prompts):
            tokens[i, :len(prompt)] = prompt
        result, done = None, 0
        while done < longest:
            size = self._bucket(longest - done)
            # a last call whose padding would pass the cache's end starts earlier: it writes the same keys and
            # values again at the positions it repeats
            lo = min(done, self.max_len - size)
            out = self._step(self.prefill_cell, tokens[:, lo:lo + size], np.full(b, lo, np.int32),
                             np.clip(lengths - 1 - lo, 0, size - 1), noise, cfgs)
            ends_here = ((lengths - 1 >= done) & (lengths - 1 < lo + size)).reshape((b,) + (1,) * (out.ndim - 1))
            result = out if result is None else np.where(ends_here, out, result)
            done = lo + size
        return result

    def _step(self, cell, tokens: np.ndarray, start: np.ndarray, last_index: np.ndarray, noise: np.ndarray,
              cfgs: Sequence[SamplingConfig]):
        """One call of a cached step; ``start``/``last_index`` and the sampling settings are per row."""
        self.call_shapes.add(tokens.shape)
        inputs = [Tensor(tokens, ms.int32), Tensor(start.astype(np.int32)), Tensor(last_index.astype(np.int32)),
                  Tensor(noise, ms.float32), *self._settings(cfgs)]
        if not getattr(cell, "takes_last_index", True):                          # a fused decode step
            del inputs[2]
        return cell(*inputs).asnumpy()

    def _settings(self, cfgs: Sequence[SamplingConfig]) -> list[Tensor]:
        """Per-row temperature, top_k and top_p as the sampler takes them."""
        temperature = np.array([1.0 if c.greedy else c.temperature for c in cfgs], np.float32)
        top_k = np.array([1 if c.greedy else (c.top_k if 0 < c.top_k < self.candidates else self.candidates)
                          for c in cfgs], np.int32)
        top_p = np.array([2.0 if (c.greedy or c.top_p in (0.0, 1.0)) else c.top_p for c in cfgs], np.float32)
        return [Tensor(temperature), Tensor(top_k), Tensor(top_p)]

    def warmup(self, prompt_length: int = 1, longest_prompt: int | None = None) -> float:
        """Compile the decode graph and the prefill graphs a prompt of this length uses, or with ``longest_prompt``
        every prefill graph up to that length's (a server, so that no request waits for a compile), and the cache
        copy and first-token sampler; returns seconds."""
        start = time.perf_counter()
        b = self.batch_size
        rows = 1 if self.refills else b
        cfgs = [SamplingConfig(greedy=True)] * b
        if longest_prompt:
            lengths = self.buckets(longest_prompt)
        else:                               # whole chunks, then the last chunk's bucket
            lengths = sorted({self._bucket(prompt_length), self._bucket(1 + (prompt_length - 1) % self.prefill_chunk)})
        for length in lengths:
            self._step(self.prefill_cell, np.full((rows, length), self.eos_id, np.int32), np.zeros(rows, np.int32),
                       np.zeros(rows, np.int32), self._greedy_noise(rows), cfgs[:rows])
        self._prefilled = None
        if self.refills:
            self.copy_cell(Tensor(np.zeros(1, np.int32)))
            self._sample_first(np.zeros((1, self.logits_width), np.float32), cfgs, self._greedy_noise(b))
        self._step(self.decode_cell, np.full((b, 1), self.eos_id, np.int32), np.zeros(b, np.int32),
                   np.zeros(b, np.int32), self._greedy_noise(b), cfgs)
        return time.perf_counter() - start

    def _greedy_noise(self, rows: int) -> np.ndarray:
        return np.full((rows, self.candidates), _GREEDY_NOISE, np.float32)

    def _sample_first(self, logits: np.ndarray, cfgs: Sequence[SamplingConfig], noise: np.ndarray) -> np.ndarray:
        """The first token of up to ``batch_size`` samples of one prompt from its logits [1, V] (one sampler graph
        of batch_size rows: the rows past the samples repeat the first's settings and are dropped)."""
        b, k = self.batch_size, len(cfgs)
        cfgs = list(cfgs) + [cfgs[0]] * (b - k)
        noise = np.concatenate([noise, self._greedy_noise(b - k)]) if k < b else noise
        ids = self.first_sampler(Tensor(np.ascontiguousarray(np.broadcast_to(logits, (b, logits.shape[-1])))),
                                 Tensor(noise), *self._settings(cfgs))
        return ids.asnumpy()[:k]

    def run(self, pull: Callable[[int, bool], list[Work] | None],
            on_text: Callable[[object, int, str, int], None] | None = None,
            on_done: Callable[[_Row], None] | None = None,
            cancelled: Callable[[object], bool] | None = None, stats: dict | None = None) -> dict:
        """Decode until ``pull`` has nothing more. ``pull(free_rows, busy)`` returns the samples to start now (at most
        ``free_rows`` in all; ``busy``: whether rows are decoding, so a server may block for work only when not),
        or None when no more will come. ``on_text(key, sample, text, token)`` receives new text as it comes, with
        the id of the token that completed it (a character split over tokens comes with its last token),
        ``on_done(row)`` each finished sample (``row.key``, ``.sample``, ``.tokens``, ``.text``, ``.completion()``,
        ``.reason``), and a sample whose ``cancelled(key)`` turns true stops (reason "cancelled"). Returns
        counters, also kept up to date in ``stats`` if given (a server's): prefills, prefill seconds and tokens,
        decode steps and seconds, row steps (tokens decoded)."""
        b = self.batch_size
        rows: list[_Row | None] = [None] * b
        stats = {} if stats is None else stats
        for key in ("prefills", "prefill_s", "prefill_tokens", "decode_steps", "decode_s", "row_steps"):
            stats.setdefault(key, 0)
        more = True

        def finish(i: int) -> None:
            if on_done is not None:
                on_done(rows[i])
            rows[i] = None

        def take(i: int, token: int) -> None:
            row = rows[i]
            new = row.take(token, self.eos_id)
            if on_text is not None and new:
                on_text(row.key, row.sample, new, token)
            if row.reason is not None:
                finish(i)

        while True:
            free = [i for i, row in enumerate(rows) if row is None]
            busy = len(free) < b
            if more and free and (self.refills or not busy):
                works = pull(len(free), busy)
                if works is None:
                    more = False
                elif works:
                    t0 = time.perf_counter()
                    started = self._start(works, free, rows, stats)
                    stats["prefill_s"] += time.perf_counter() - t0
                    for i, token in started:
                        take(i, token)
            for i, row in enumerate(rows):
                if row is not None and cancelled is not None and cancelled(row.key):
                    row.reason = "cancelled"
                    finish(i)
            active = [i for i, row in enumerate(rows) if row is not None]
            if not active:
                if not more:
                    return stats
                continue
            tokens, positions = np.full((b, 1), self.eos_id, np.int32), np.zeros(b, np.int32)
            noise = self._greedy_noise(b)
            cfgs = [rows[active[0]].cfg] * b
            for i in active:
                tokens[i, 0], positions[i], noise[i], cfgs[i] = (rows[i].tokens[-1], rows[i].position,
                                                                 rows[i].noise(), rows[i].cfg)
            t0 = time.perf_counter()
            next_ids = self._step(self.decode_cell, tokens, positions, np.zeros(b, np.int32), noise, cfgs)
            stats["decode_s"] += time.perf_counter() - t0
            stats["decode_steps"] += 1
            stats["row_steps"] += len(active)
            for i in active:
                rows[i].position += 1
                take(i, int(next_ids[i]))

    def _start(self, works: Sequence[Work], free: list[int], rows: list, stats: dict) -> list[tuple[int, int]]:
        """Place the samples of ``works`` in free rows, prefill their prompts (counted in ``stats``) and draw their
        first tokens; returns (row, first token) pairs."""
        started = []
        if not self.refills:                # one exported graph: every row at once (they are all free)
            stats["prefills"] += 1
            stats["prefill_tokens"] += sum(len(w.prompt_ids) for w in works)
            placed = [(w, s) for w in works for s in w.samples]
            for i, (w, s) in enumerate(placed):
                rows[i] = _Row(w.key, s, w.cfg, self.tokenizer.stream_decoder(), self.candidates,
                               len(w.prompt_ids))
            filler = [placed[0]] * (self.batch_size - len(placed))   # idle rows repeat the first sample's prompt
            noise = np.concatenate([np.stack([rows[i].noise() for i in range(len(placed))]),
                                    self._greedy_noise(len(filler))])
            ids = self._prefill([w.prompt_ids for w, _ in placed + filler], noise,
                                [w.cfg for w, _ in placed + filler])
            return [(i, int(ids[i])) for i in range(len(placed))]
        for work in works:
            prompt = tuple(int(t) for t in work.prompt_ids)
            if self._prefilled is None or self._prefilled[0] != prompt:
                # the prefill engine's cache row keeps this prompt until the next prefill: more samples of it
                # (rows that free up later) are copied from it without prefilling again
                self._prefilled = prompt, self._prefill([prompt], self._greedy_noise(1), [work.cfg])      # [1, V]
                stats["prefills"] += 1
                stats["prefill_tokens"] += len(prompt)
            logits = self._prefilled[1]
            slots = [free.pop(0) for _ in work.samples]
            for slot, sample in zip(slots, work.samples):
                self.copy_cell(Tensor(np.array([slot], np.int32)))
                rows[slot] = _Row(work.key, sample, work.cfg, self.tokenizer.stream_decoder(), self.candidates,
                                  len(work.prompt_ids))
            first = self._sample_first(logits, [work.cfg] * len(slots), np.stack([rows[i].noise() for i in slots]))
            started += [(slot, int(token)) for slot, token in zip(slots, first)]
        return started

    def generate(self, prompt_ids: Sequence[int], cfg: SamplingConfig,
                 on_text: Callable[[int, str], None] | None = None) -> GenerationResult:
        """Sample ``batch_size`` completions of ``prompt_ids``; ``on_text(i, text)`` receives sample i's new text."""
        return self.generate_rows([(prompt_ids, cfg, self.batch_size)],
                                  None if on_text is None else (lambda _, i, text, _token: on_text(i, text)))[0]

    def generate_rows(self, requests: Sequence[tuple], on_text: Callable[[int, int, str], None] | None = None,
                      cancelled: Callable[[int], bool] | None = None) -> list[GenerationResult]:
        """Generate for several requests, each ``(prompt_ids, cfg, n)`` or ``(prompt_ids, cfg, n, first_sample)``:
        its samples ``first_sample .. first_sample + n - 1`` (any n: rows are refilled as samples finish), each
        drawn from its own seeded noise, so a request's samples do not depend on the batch size or on what shares
        the batch. ``on_text(request, i, text)`` receives sample i's new text; the samples of a request for which
        ``cancelled(request)`` turns true stop (finish reason "cancelled")."""
        requests = [(list(r[0]), r[1], r[2], r[3] if len(r) > 3 else 0) for r in requests]
        self._check(requests)
        waiting = [[key, first, first + n] for key, (_, _, n, first) in enumerate(requests)]
        rows_done: list[dict[int, _Row]] = [{} for _ in requests]
        spans: dict[int, list[float]] = {}

        def pull(free: int, busy: bool) -> list[Work] | None:
            if not waiting:
                return None
            works = []
            while waiting and free > 0:
                key, nxt, end = waiting[0]
                k = min(free, end - nxt)
                works.append(Work(key, requests[key][0], requests[key][1], list(range(nxt, nxt + k))))
                spans.setdefault(key, [time.perf_counter(), 0.0])
                free -= k
                waiting[0][1] += k
                if waiting[0][1] == end:
                    waiting.pop(0)
            return works

        def done(row: _Row) -> None:
            rows_done[row.key][row.sample] = row
            spans[row.key][1] = time.perf_counter()

        stats = self.run(pull, None if on_text is None else
                         (lambda key, sample, text, _token: on_text(key, sample - requests[key][3], text)), done,
                         cancelled)
        results = []
        for key, (ids, _, n, first) in enumerate(requests):
            mine = [rows_done[key][s] for s in range(first, first + n)]
            generated = sum(len(r.tokens) for r in mine)
            timings = {"prefill_s": stats["prefill_s"], "prefill_tokens": len(ids), "prefills": stats["prefills"],
                       "decode_s": stats["decode_s"], "decode_steps": stats["decode_steps"],
                       "generated_tokens": generated, "batch_rows": self.batch_size,
                       "wall_s": spans[key][1] - spans[key][0],
                       "decode_tokens_per_s": stats["row_steps"] / stats["decode_s"] if stats["decode_s"] else 0.0}
            results.append(GenerationResult([r.completion() for r in mine], [r.text for r in mine],
                                            [r.tokens for r in mine], [str(r.reason) for r in mine], len(ids), timings))
        return results

    def _check(self, requests) -> None:
        """Every request must have a prompt, fit the cache and ask for at least one sample."""
        for prompt_ids, cfg, n, first in requests:
            if len(prompt_ids) == 0:
                raise ValueError("the prompt is empty")
            if len(prompt_ids) + cfg.max_new_tokens > self.max_len:
                raise ValueError(f"prompt ({len(prompt_ids)} tokens) + max_new_tokens ({cfg.max_new_tokens}) exceeds "
                                 f"the context of {self.max_len} tokens")
            if n < 1 or first < 0:
                raise ValueError(f"a request needs n >= 1 samples from a first sample index >= 0, got n={n}, "
                                 f"first={first}")
