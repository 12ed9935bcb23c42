"""Serve a CodeGeeX checkpoint (or exported MindIR folder) over HTTP for IDE extensions and OpenAI-style clients.

    python serve.py                                                 # the embedded checkpoints/codegeex-mini, http://127.0.0.1:8000
    python serve.py --checkpoint ckpt/codegeex-13b-int8
    python serve.py --mindir mindir/codegeex-13b-int8 --port 9000 --api-key SECRET
    curl -s localhost:8000/v1/completions -H 'Content-Type: application/json' \\
        -d '{"prompt": "# language: Python\\ndef fib(n):", "max_tokens": 64, "temperature": 0}'

Open http://127.0.0.1:8000/ in a browser for the playground page (complete, translate, explain; streamed).
Endpoints: POST /v1/completions (prompt, max_tokens, temperature (0 = greedy), top_p, top_k, n, stop, stream,
seed, language), GET /v1/models, GET /health, and the CodeGeeX extension's POST /multilingual_code_generate
({prompt, n, lang, temperature, top_p, top_k} -> {status: 0, result: {output: {code: [...]}, process_time}}) and
POST /multilingual_code_translate ({prompt, src_lang, dst_lang, ...}) and /multilingual_code_explain ({prompt, lang,
...}: the code commented line by line), POST /v1/prompt ({task, code, language, src_lang, dst_lang} -> {prompt,
language, stop, lead}: the prompt the server would build, and what it already wrote of the answer). With --api-key
(or CODEGEEX_API_KEY) every endpoint but /health and the page at / needs `Authorization: Bearer KEY` (the CodeGeeX
endpoints also accept the body's apikey).
Continuous batching: --batch-size rows decode together, and a row that finishes takes the next waiting sample at the
next step (the samples of one request that start together share one prefill); SIGTERM/SIGINT finish in-flight
requests, then exit.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from codegeex_ms.cli import ArgumentParser, UsageError, port, positive_int, run


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, help="checkpoint folder (config + weights + tokenizer reference; "
                                                     "default: the embedded checkpoints/codegeex-mini)")
    src.add_argument("--mindir", type=Path, help="exported folder (python -m codegeex_ms.quantize_export export); "
                                                 "its batch size is the server's")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port, default=8000, help="port (default 8000)")
    p.add_argument("--api-key", default=os.environ.get("CODEGEEX_API_KEY"),
                   help="require this bearer token (default: $CODEGEEX_API_KEY; none = open)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let web pages from ORIGIN (e.g. http://localhost:3000, or * for any) call the API from a "
                        "browser; repeat for several. Needed by VS Code for the web, whose extensions run in the "
                        "browser; the playground page at / is same-origin and needs none (default: none)")
    p.add_argument("--batch-size", type=positive_int, default=4,
                   help="rows decoded together, refilled as samples finish (--checkpoint; default 4)")
    p.add_argument("--max-prompt-tokens", type=positive_int, default=1024,
                   help="longest prompt accepted (default 1024)")
    p.add_argument("--max-new-tokens", type=positive_int, default=512, help="largest max_tokens accepted (default 512)")
    p.add_argument("--max-n", type=positive_int, default=8,
                   help="most samples per request (default 8; more than --batch-size take rows as they free up)")
    p.add_argument("--context", type=positive_int,
                   help="KV-cache length in tokens (--checkpoint; default: --max-prompt-tokens + --max-new-tokens, "
                        "at most the model's positions). Every decode step attends over all of it, so a cache "
                        "no longer than the requests need is faster")
    p.add_argument("--int8-activations", action="store_true",
                   help="--checkpoint with int8 weights on a CPU with AVX-512 VNNI: quantise the Linears' inputs per "
                        "row too and multiply in integers (approximate, as torch's quantize_dynamic; not faster where "
                        "decoding is bound by memory bandwidth, see bench/README.md)")
    p.add_argument("--model-name", help="name reported by /v1/models (default: the folder name)")
    p.add_argument("--tag-language", action="store_true",
                   help="put the language's tag line (e.g. '# language: Python'), which CodeGeeX was trained with, in "
                        "front of a /v1/completions text prompt whose request names its language (or "
                        "--default-language), unless the prompt starts with it; editors send the raw prefix")
    p.add_argument("--default-language", metavar="LANG", type=known_language,
                   help="the language of /v1/completions requests that name none: its stop rule and cleanup, and "
                        "its tag with --tag-language (default: none)")
    p.add_argument("--device", choices=("CPU", "GPU", "Ascend"), help="MindSpore device (default: its choice)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="how much the HTTP server logs (default info: one line per request)")
    return p.parse_args(argv)


def build_engine(args):
    import mindspore as ms
    from codegeex_ms.checkpoint import CheckpointError
    from codegeex_ms.loading import load_for_inference
    from codegeex_ms.serving import Engine, RequestLimits

    ms.set_context(mode=ms.GRAPH_MODE)
    if args.device:
        ms.set_device(args.device)
    loaded = load_for_inference(args.checkpoint, args.mindir,
                                precision={"activation_quant": "int8"} if args.int8_activations else None)
    context = args.context or min(loaded.context, args.max_prompt_tokens + args.max_new_tokens)
    if not 1 < context <= loaded.context:
        raise CheckpointError(f"--context {context}: must be in 2..{loaded.context} (the model's positions)")
    generator = loaded.generator(batch_size=loaded.fixed_batch_size or args.batch_size, max_len=context)
    # compile the decode graph and every prefill graph a request can meet before taking requests
    generator.warmup(longest_prompt=min(args.max_prompt_tokens, generator.max_len))
    limits = RequestLimits(args.max_prompt_tokens, args.max_new_tokens, args.max_n)
    return Engine(generator, loaded.tokenizer, args.model_name or loaded.folder.resolve().name, limits,
                  tag_language=args.tag_language, default_language=args.default_language)


DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "codegeex-mini"


def known_language(name: str) -> str:
    from codegeex_ms.languages import UnknownLanguageError, canonical_language
    try:
        return canonical_language(name)
    except UnknownLanguageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.int8_activations and args.mindir:
        raise UsageError("--int8-activations applies to --checkpoint; an exported MindIR graph keeps the ops it was "
                         "exported with")
    if args.checkpoint is None and args.mindir is None:
        args.checkpoint = DEFAULT_CHECKPOINT
    import uvicorn
    from codegeex_ms.serving import create_app
    engine = build_engine(args)
    app = create_app(engine, args.api_key, tuple(args.cors_origin))
    print(f"serving {engine.model_name} on http://{args.host}:{args.port} (batch {engine.generator.batch_size}, "
          f"context {engine.context}, auth {'on' if args.api_key else 'off'})", flush=True)
    # on SIGTERM/SIGINT uvicorn stops accepting, answers the in-flight requests, runs the app's shutdown (which
    # drains the engine) and then exits by re-raising the signal
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=120)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
