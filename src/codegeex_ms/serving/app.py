"""The FastAPI app: error shapes, the API key and CORS, the playground page and info routes, and every API's routes."""
from __future__ import annotations

import asyncio
import contextlib
import json
from importlib import resources
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict

from ..languages import LANGUAGE_TAGS
from .codegeex_api import add_codegeex_routes, task_prompt
from .engine import ClientError, Engine
from .openai_api import add_chat_route, add_openai_routes


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
    add_openai_routes(app, engine)
    add_chat_route(app)
    add_codegeex_routes(app, engine)
    from .tabby import add_tabby_routes
    from .tgi import add_tgi_routes
    add_tgi_routes(app, engine)
    add_tabby_routes(app, engine)
    return app

def _openai_error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status)

def _error_handlers(app: FastAPI) -> None:
    """Validation errors and ClientErrors as the OpenAI error shape, or the CodeGeeX or TGI endpoints' own."""
    from .tgi import error_body as tgi_error, is_tgi
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
    from .tgi import is_tgi
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
        built = task_prompt(body.task, body.code, body.language, body.src_lang, body.dst_lang)
        return {"prompt": built.text, "language": built.language, "stop": list(built.stop), "lead": built.lead}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": engine.model_name, "object": "model", "created": 0,
                                            "owned_by": "codegeex-ms"}]}

PLAYGROUND_HTML = resources.files("codegeex_ms").joinpath("playground.html").read_text(encoding="utf-8")
