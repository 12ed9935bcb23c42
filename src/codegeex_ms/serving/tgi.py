"""Text Generation Inference's API on serve.py: ``POST /generate``, ``POST /generate_stream`` and ``POST /`` (the
route the ``text-generation`` client calls: a one-element list, or the stream when ``stream`` is true), the bodies
llm-ls's ``tgi`` backend, cmp-ai's ``hf`` backend and the ``text-generation`` client send.

Request: ``{"inputs": str, "parameters": {...}, "stream": bool}``. Sampling happens when ``do_sample`` is true or
``temperature``, ``top_k`` or ``top_p`` is given; otherwise decoding is greedy. ``max_new_tokens`` defaults to 20
(the client's default). The generated text ends before a ``stop`` sequence, as on ``/v1/completions``.
``return_full_text`` puts the input in front; ``truncate`` keeps the input's last N tokens. What this model cannot
do gets a 422 naming the parameter, in TGI's error shape ``{"error", "error_type": "validation"}``: repetition and
frequency penalties, ``typical_p``, ``best_of`` > 1, ``watermark``, ``decoder_input_details`` (no prefill
log-probabilities), ``top_n_tokens``, ``grammar``, ``adapter_id``. Token details carry each generated token's id,
text and whether it is special; log-probabilities are not computed (``logprob`` null).
"""
from __future__ import annotations

import asyncio
import json
import uuid

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from ..generation import SamplingConfig
from .engine import ClientError, Engine, JobStream, wait_for

TGI_PATHS = ("/generate", "/generate_stream")
FINISH = {"eos": "eos_token", "stop": "stop_sequence", "rule": "eos_token", "length": "length"}


class TGIParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    do_sample: bool = False
    max_new_tokens: int | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    return_full_text: bool | None = False
    stop: list[str] = []
    seed: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, gt=0.0, le=5.0)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    truncate: int | None = Field(None, ge=1)
    typical_p: float | None = None
    best_of: int | None = None
    watermark: bool = False
    details: bool = False
    decoder_input_details: bool = False
    top_n_tokens: int | None = None
    grammar: dict | None = None
    adapter_id: str | None = None

    def refuse_unsupported(self) -> None:
        neutral = {"repetition_penalty": (None, 1.0), "frequency_penalty": (None, 0.0), "typical_p": (None, 1.0),
                   "best_of": (None, 1), "watermark": (False,), "decoder_input_details": (False,),
                   "top_n_tokens": (None, 0), "grammar": (None,), "adapter_id": (None,)}
        why = {"repetition_penalty": "this server applies no repetition penalties",
               "frequency_penalty": "this server applies no repetition penalties",
               "typical_p": "this server has no typical sampling", "best_of": "this server returns the one sample",
               "watermark": "this server does not watermark", "top_n_tokens": "log-probabilities are not computed",
               "decoder_input_details": "log-probabilities are not computed", "grammar": "no constrained decoding",
               "adapter_id": "no adapters are served"}
        for name, allowed in neutral.items():
            if getattr(self, name) not in allowed:
                raise ClientError(f"parameters.{name}: {why[name]} (send {allowed[0]!r} or leave it out)",
                                  f"parameters.{name}", 422)


class TGIRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: str
    parameters: TGIParameters = TGIParameters()
    stream: bool = False


def is_tgi(request: Request) -> bool:
    return request.url.path in TGI_PATHS or (request.url.path == "/" and request.method == "POST")


def error_body(message: str) -> dict:
    return {"error": message, "error_type": "validation"}


def add_tgi_routes(app: FastAPI, engine: Engine) -> None:
    def submit(body: TGIRequest, stream: bool):
        p = body.parameters
        p.refuse_unsupported()
        max_new = p.max_new_tokens if p.max_new_tokens is not None else 20
        try:
            if not body.inputs:
                raise ClientError("inputs must not be empty", "inputs")
            ids = engine.tokenizer.encode(body.inputs)
            ids = engine.check_ids(ids[-p.truncate:] if p.truncate else ids, max_new, 1, "inputs")
        except ClientError as e:            # this API's names for the limits
            raise ClientError(str(e).replace("max_tokens", "parameters.max_new_tokens"), e.param, 422) from None
        sampling = p.do_sample or any(v is not None for v in (p.temperature, p.top_k, p.top_p))
        seed = p.seed if p.seed is not None else uuid.uuid4().int % 2**32
        cfg = SamplingConfig(max_new_tokens=max_new, greedy=not sampling, temperature=p.temperature or 1.0,
                             top_p=p.top_p or 1.0, top_k=p.top_k or 0, seed=seed, stop=list(p.stop))
        queue = asyncio.Queue() if stream else False
        return engine.submit(ids, cfg, 1, stream=queue), queue, (seed if sampling else None)

    def token(token_id: int, text: str | None = None) -> dict:
        special = token_id == engine.generator.eos_id
        return {"id": int(token_id), "text": engine.tokenizer.decode([token_id]) if text is None else text,
                "logprob": None, "special": special}

    def answer(body: TGIRequest, result, seed) -> dict:
        text = (body.inputs if body.parameters.return_full_text else "") + result.completions[0]
        out = {"generated_text": text}
        if body.parameters.details:
            ids = result.token_ids[0]
            out["details"] = {"finish_reason": FINISH.get(result.finish_reasons[0], "length"),
                              "generated_tokens": len(ids), "seed": seed, "prefill": [],
                              "tokens": [token(t) for t in ids], "top_tokens": None, "best_of_sequences": None}
        return out

    def stream_response(body: TGIRequest, job, queue, seed):
        async def events():
            held, index = None, 0
            while True:
                item = await queue.get()
                if item is None:
                    break
                _, text, token_id = item
                if held is not None:
                    yield f"data:{json.dumps(held)}\n\n"
                held = {"index": index, "token": token(token_id, text), "top_tokens": None, "generated_text": None,
                        "details": None}
                index += 1
            result = job.done.result()[0]
            if held is None:                # nothing printable was generated: the last token (or EOS) ends it
                ids = result.token_ids[0]
                held = {"index": 0, "token": token(ids[-1] if ids else engine.generator.eos_id, ""),
                        "top_tokens": None}
            held["generated_text"] = (body.inputs if body.parameters.return_full_text else "") + result.completions[0]
            held["details"] = {"finish_reason": FINISH.get(result.finish_reasons[0], "length"),
                               "generated_tokens": len(result.token_ids[0]), "seed": seed}
            yield f"data:{json.dumps(held)}\n\n"
        return JobStream(events(), engine, [job], media_type="text/event-stream")

    @app.post("/generate")
    async def generate(body: TGIRequest, request: Request):
        job, _, seed = submit(body, False)
        result, _ = await wait_for(engine, job, request)
        return answer(body, result, seed)

    @app.post("/generate_stream")
    async def generate_stream(body: TGIRequest):
        job, queue, seed = submit(body, True)
        return stream_response(body, job, queue, seed)

    @app.post("/")
    async def compat(body: TGIRequest, request: Request):
        """TGI's compatibility route: a one-element list, or the stream when ``stream`` is true."""
        job, queue, seed = submit(body, body.stream)
        if body.stream:
            return stream_response(body, job, queue, seed)
        result, _ = await wait_for(engine, job, request)
        return [answer(body, result, seed)]
