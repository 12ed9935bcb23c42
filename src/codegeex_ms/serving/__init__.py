"""An HTTP server for IDE extensions: OpenAI-style completions, the CodeGeeX extension's endpoints, a playground page.

One engine thread owns the model and runs ``Generator.run``, continuous batching: requests wait in a queue, and
whenever a row of the decode batch (``batch_size`` rows) is free the next waiting sample takes it at the next
decode step (a request with ``n`` samples takes up to ``n`` rows; its samples that start together share one
prefill). Each sample keeps its own prompt, position, sampling settings, seeded noise and stop rules, so what
shares the batch does not change any request's output. A request whose client went away stops at the next token.
With an exported MindIR graph (one engine, no cache copy) new requests start only when every row is free. Built on
FastAPI + uvicorn.

Modules: ``engine`` (the engine thread, jobs, limits), ``app`` (the FastAPI app: errors, key, CORS, page, info
routes), one module per API: ``openai_api`` (``/v1/completions``), ``codegeex_api`` (the CodeGeeX extension's),
``tgi`` (Text Generation Inference's), ``tabby`` (Tabby's).
"""
from .app import create_app
from .engine import ClientError, Engine, RequestLimits

__all__ = ["ClientError", "Engine", "RequestLimits", "create_app"]
