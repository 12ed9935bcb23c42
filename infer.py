"""Complete, translate or explain code with a CodeGeeX checkpoint.

    python infer.py --prompt "def fibonacci(n):" --lang python       # the embedded small model
    python infer.py --checkpoint ckpt/codegeex-13b --prompt "def fibonacci(n):" --lang python
    python infer.py --checkpoint DIR --mode translate --src-lang python --tgt-lang cpp --prompt-file f.py
    echo "int add(int a, int b) { return a + b; }" | python infer.py --checkpoint DIR --mode explain --lang cpp

Prompt templates (--mode):
  complete   <language tag line>\\n<prompt>[\\n]      (tag line and final newline only with --lang; see --no-newline)
  translate  code translation\\n<Src>:\\n<prompt>\\n<Tgt>:\\n<--tgt-declaration>   (the original's template)
  explain    few-shot "Explain the code line by line" prompt (the VS Code extension's template)

Completions stop at EOS, at any --stop string, or by the language's rule (Python: a new top-level statement;
C++/Java/JavaScript/Go/Rust: braces balanced), and are then cleaned up as the original did.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from codegeex_ms.cli import (ArgumentParser, UsageError, non_negative_float, non_negative_int, positive_float,
                             positive_int)


REPO = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = REPO / "checkpoints" / "codegeex-mini"


def parse_args(argv=None):
    p = ArgumentParser(description="Complete, translate or explain code with a CodeGeeX checkpoint.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    src = p.add_argument_group("model")
    which = src.add_mutually_exclusive_group()
    which.add_argument("--checkpoint", type=Path,
                       help="checkpoint folder (config.yaml + model.safetensors), e.g. from "
                            "python -m codegeex_ms.convert "
                            f"(default: the embedded small model, {DEFAULT_CHECKPOINT.relative_to(REPO)})")
    which.add_argument("--mindir", type=Path,
                       help="exported folder from `python -m codegeex_ms.quantize_export export` (runs the MindIR "
                            "graph; --n must not exceed its batch size)")
    src.add_argument("--tokenizer", type=Path,
                     help="tokenizer directory (default: the one recorded in the checkpoint folder)")
    src.add_argument("--compute-dtype", choices=("float32", "float16", "bfloat16"),
                     help="override the checkpoint's compute dtype (bfloat16 only on Ascend)")
    src.add_argument("--int8-activations", action="store_true",
                     help="int8 checkpoint on a CPU with AVX-512 VNNI: quantise the Linears' inputs per row too and "
                          "multiply in integers (approximate, as torch's quantize_dynamic; not faster where decoding "
                          "is bound by memory bandwidth, see bench/README.md; without VNNI a warning and weight-only "
                          "int8)")
    src.add_argument("--device", choices=("CPU", "GPU", "Ascend"),
                     help="MindSpore device (default: MindSpore's choice)")
    src.add_argument("--pynative", action="store_true",
                     help="run eagerly (PyNative) instead of compiled graphs, to debug")

    prm = p.add_argument_group("prompt")
    given = prm.add_mutually_exclusive_group()
    given.add_argument("--prompt", help="the prompt text")
    given.add_argument("--prompt-file", type=Path, help="read the prompt from this file")
    prm.add_argument("--mode", choices=("complete", "translate", "explain"), default="complete",
                     help="prompt template (see below; default: complete)")
    prm.add_argument("--lang", help="language of the prompt (python, cpp, java, js, go, rust, ...): adds its tag "
                                    "line and picks the stop rule")
    prm.add_argument("--src-lang", help="translate: language of the prompt code")
    prm.add_argument("--tgt-lang", help="translate: language to translate into")
    prm.add_argument("--tgt-declaration", default="", help="translate: target signature to start the answer with")
    prm.add_argument("--no-newline", action="store_true",
                     help="complete with --lang: do not end the prompt with a newline (by default one is added, "
                          "so that the answer starts on the next line as the stop rules expect)")
    prm.add_argument("--truncate-left", action="store_true",
                     help="drop tokens from the start of a prompt that does not fit the context (default: error)")

    smp = p.add_argument_group("sampling")
    smp.add_argument("--max-new-tokens", type=positive_int, default=128, help="most tokens to generate (default 128)")
    smp.add_argument("--greedy", action="store_true", help="always take the most likely token")
    smp.add_argument("--temperature", type=positive_float, default=0.8, help="softmax temperature (default 0.8)")
    smp.add_argument("--top-p", type=non_negative_float, default=0.95,
                     help="nucleus sampling mass, 0 or 1 = off (default 0.95)")
    smp.add_argument("--top-k", type=non_negative_int, default=0,
                     help="sample among the k most likely tokens, 0 = off (default 0)")
    smp.add_argument("--candidates", type=positive_int, default=1024,
                     help="sampling considers only this many most likely tokens (default 1024)")
    smp.add_argument("--n", type=positive_int, default=1,
                     help="number of samples, decoded together as one batch (default 1)")
    smp.add_argument("--seed", type=non_negative_int, default=0,
                     help="random seed: the same seed gives the same output")
    smp.add_argument("--stop", action="append", default=[], help="extra stop string (repeatable)")

    out = p.add_argument_group("output")
    out.add_argument("--stream", action="store_true", help="print text as it is generated (needs --n 1)")
    out.add_argument("--json", action="store_true", help="print one JSON object with completions and timings")
    return p.parse_args(argv)


def build_prompt(args) -> tuple[str, str | None, list[str]]:
    """(prompt text, language of the answer for stop rules, extra stop strings) for the chosen mode."""
    from codegeex_ms import prompts
    if args.prompt is not None:
        code = args.prompt
    elif args.prompt_file is not None:
        code = args.prompt_file.read_text(encoding="utf-8")
    elif not sys.stdin.isatty():
        code = sys.stdin.read()
    else:
        raise UsageError("give a prompt with --prompt, --prompt-file or on stdin")
    if not code.strip():
        raise UsageError("the prompt is empty")
    if args.mode == "translate" and (not args.src_lang or not args.tgt_lang):
        raise UsageError("--mode translate needs --src-lang and --tgt-lang")
    if args.mode == "explain" and not args.lang:
        raise UsageError("--mode explain needs --lang")
    prompt = prompts.build(args.mode, code, language=args.lang, src_language=args.src_lang,
                           tgt_language=args.tgt_lang, tgt_declaration=args.tgt_declaration,
                           end_line=not args.no_newline)
    return prompt.text, prompt.language, list(prompt.stop)


def main(args) -> int:
    import mindspore as ms
    from codegeex_ms.generation import SamplingConfig, cache_length
    from codegeex_ms.languages import UnknownLanguageError
    from codegeex_ms.loading import load_for_inference

    if (args.int8_activations or args.compute_dtype) and args.mindir:
        raise UsageError("--int8-activations and --compute-dtype apply to --checkpoint; an exported MindIR graph "
                         "keeps the ops it was exported with")
    if args.stream and args.n != 1:
        raise UsageError("--stream prints one sample; use --n 1 (or --json for several)")
    try:
        prompt, language, extra_stop = build_prompt(args)
    except UnknownLanguageError as e:
        raise UsageError(f"{e}") from None
    ms.set_context(mode=ms.PYNATIVE_MODE if args.pynative else ms.GRAPH_MODE)
    if args.device:
        ms.set_device(args.device)

    if args.checkpoint is None and args.mindir is None:
        if not (DEFAULT_CHECKPOINT / "config.yaml").is_file():
            raise UsageError(f"the embedded model {DEFAULT_CHECKPOINT} is missing; pass --checkpoint DIR")
        args.checkpoint = DEFAULT_CHECKPOINT
    precision = {"compute_dtype": args.compute_dtype} if args.compute_dtype else {}
    if args.int8_activations:
        precision["activation_quant"] = "int8"
    t0 = time.perf_counter()
    loaded = load_for_inference(args.checkpoint, args.mindir, args.tokenizer, precision)
    tokenizer, context = loaded.tokenizer, loaded.context
    t_load = time.perf_counter() - t0

    ids = tokenizer.encode(prompt)
    room = context - args.max_new_tokens
    if room < 1:
        raise UsageError(f"--max-new-tokens {args.max_new_tokens} leaves no room for a prompt in the "
                         f"{context}-token context")
    if len(ids) > room:
        if not args.truncate_left:
            raise UsageError(f"the prompt is {len(ids)} tokens; with --max-new-tokens {args.max_new_tokens} "
                             f"only {room} fit the {context}-token context (use --truncate-left to keep its end)")
        ids = ids[-room:]
    try:
        cfg = SamplingConfig(max_new_tokens=args.max_new_tokens, greedy=args.greedy, temperature=args.temperature,
                             top_k=args.top_k, top_p=args.top_p, seed=args.seed, stop=args.stop + extra_stop,
                             language=language)
    except ValueError as e:
        raise UsageError(f"{e}") from None
    generator = loaded.generator(batch_size=args.n, max_len=cache_length(len(ids) + args.max_new_tokens, context),
                                 candidates=None if args.mindir else args.candidates)
    t_compile = generator.warmup(len(ids))

    def show(_, __, text):
        sys.stdout.write(text)
        sys.stdout.flush()

    # --n rows (an exported graph may have more: the others stay idle)
    result = generator.generate_rows([(ids, cfg, args.n)], on_text=show if args.stream and not args.json else None)[0]
    timings = {"load_s": round(t_load, 3), "compile_s": round(t_compile, 3)} | \
        {k: round(v, 4) if isinstance(v, float) else v for k, v in result.timings.items()}
    if args.json:
        print(json.dumps({"prompt": prompt, "prompt_tokens": result.prompt_tokens, "completions": result.completions,
                          "finish_reasons": result.finish_reasons, "timings": timings}, ensure_ascii=False, indent=2))
    elif args.stream:
        print()
    else:
        for i, text in enumerate(result.completions):
            if args.n > 1:
                print(f"=== sample {i + 1}/{args.n} ({result.finish_reasons[i]}) ===")
            print(text)
    print(f"{result.timings['generated_tokens']} tokens in {args.n} sample(s): "
          f"prefill {result.prompt_tokens} tokens in "
          f"{timings['prefill_s'] * 1000:.0f} ms, decode {timings['decode_tokens_per_s']:.1f} tokens/s, "
          f"compile {t_compile:.1f} s, load {t_load:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from codegeex_ms.cli import run
    sys.exit(run(main, parse_args()))
