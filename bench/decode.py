"""Prefill and decode speed of the KV-cached engine, side by side with the reference PyTorch CodeGeeX and llama.cpp.

    python bench/decode.py [--config codegeex_350m] [--prompt-tokens 64] [--new-tokens 64] [--batch 1 8]

Sides, greedy, on the CPU: ours fp32; ours int8 (``quantize``'s default: weight-only int8 Linears and word
embedding/head, the CPU kernels); ours int8 with the fp32 head (``quantize --embedding keep``: the torch peer keeps
its head in fp32 too; ours reads it through an int8 copy first and computes in fp32 only the rows the sampler can
draw, so its draws are the whole fp32 head's with about the int8 head's bytes, which its bytes per token count); the
reference ``codegeex==1.0`` ``CodeGeeXModel`` with its growing
``layer_past`` cache in fp32; the reference after ``torch.ao.quantization.quantize_dynamic(model, {nn.Linear},
dtype=torch.qint8)`` (int8 weights and int8 activations in its Linears); ours int8 with int8 activations too
(``precision.activation_quant: int8``, the AVX-512 VNNI kernel); llama.cpp Q8_0 and F32 (``bench/llamacpp.py``: a
GPT-2-architecture GGUF of the same shapes and bytes per token; install its bench-only dependency as that file
says). Ours and the reference share random weights (drawn in the reference model, converted with
``python -m codegeex_ms.convert``, int8 by ``codegeex_ms.quantize_export.quantize_checkpoint``); llama.cpp has
random weights of its own, so its greedy tokens are not compared. Batch b is b different prompts for ours and
llama.cpp (ours prefills each in its one-row prefill engine), b copies of the first for the reference.

Every side runs in a process of its own (a MindSpore graph run leaves threads behind that slowed the reference by
a third when both shared one process), after its load and warm-up; the sides alternate within each of
``--repeats`` rounds, the order reversed every other round, and the best round of each side is shown. The share
of the bandwidth bound is bytes read per token x decode tokens/s / batch / read bandwidth (numpy sum over 1 GiB,
one thread, measured before and after; above 100%: both cores read). The two-thread read rate is measured before
each round too and printed beside the rounds: the host's memory rate drifts within minutes, and batch-1 decoding
follows it. Check ``uptime`` first: a figure taken while another job loads the CPU is not a result.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
W8A8 = "ours int8 + int8 activations"
FP32_HEAD = "ours int8, fp32 head"
LLAMA_Q8, LLAMA_F32 = "llama.cpp Q8_0", "llama.cpp F32"
SIDES = ("ours fp32", "reference fp32", "ours int8", FP32_HEAD, "reference + torch int8", W8A8, LLAMA_Q8, LLAMA_F32)
FOLDERS = {"ours fp32": "ours", "ours int8": "ours_int8", FP32_HEAD: "ours_int8_fp32_head", W8A8: "ours_int8"}
GGUF = {LLAMA_Q8: "llama-q8_0.gguf", LLAMA_F32: "llama-f32.gguf"}


def read_bandwidth_gbs(megabytes: int = 1024, threads: int = 1) -> float:
    """The best of 5 numpy sums over ``megabytes`` in all, split over ``threads`` threads (numpy's sum releases the
    GIL, so two threads read on both cores)."""
    from concurrent.futures import ThreadPoolExecutor
    arrays = [np.ones(megabytes * 2**20 // 8 // threads, np.float64) for _ in range(threads)]
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(5):
            start = time.perf_counter()
            list(pool.map(np.sum, arrays))
            best = min(best, time.perf_counter() - start)
    return sum(a.nbytes for a in arrays) / best / 1e9


def bench_config(name: str):
    from codegeex_ms.config import resolve_config
    return resolve_config(name).replace(model={"hidden_dropout": 0.0, "attention_dropout": 0.0},
                                        precision={"compute_dtype": "float32", "param_dtype": "float32"})


def prompts(m, batches, prompt_tokens):
    rng = np.random.default_rng(0)
    return {b: rng.integers(0, m.vocab_size, size=(b, prompt_tokens)) for b in batches}


def reference_run(model, torch, prompt: np.ndarray, new_tokens: int, vocab: int):
    """Greedy decoding with the reference's layer_past cache; returns (prefill s, decode s, tokens of row 0)."""
    b, s = prompt.shape
    total = s + new_tokens
    blocked = torch.tril(torch.ones(1, 1, total, total)) < 0.5
    tokens = torch.as_tensor(prompt, dtype=torch.long)
    with torch.no_grad():
        start = time.perf_counter()
        logits, past = model(tokens, torch.arange(s).expand(b, s), blocked, get_key_value=True)
        t_prefill = time.perf_counter() - start
        out = []
        start = time.perf_counter()
        for step in range(new_tokens):
            nxt = logits[:, -1, :vocab].argmax(-1, keepdim=True)
            out.append(nxt)
            if step == new_tokens - 1:
                break
            pos = torch.full((b, 1), s + step, dtype=torch.long)
            logits, past = model(nxt, pos, blocked, layer_past=past, get_key_value=True)
        t_decode = time.perf_counter() - start
    return t_prefill, t_decode, torch.cat(out, 1)[0].tolist()


def run_side(side: str, work: Path, args) -> dict:
    """One side in this process: load, warm up, then one timed generation per batch size."""
    cfg = bench_config(args.config)
    m = cfg.model
    results = {}
    start = time.perf_counter()
    if side.startswith("reference"):
        import torch
        from reference import reference_model
        model = reference_model(m).eval()
        model.load_state_dict(torch.load(work / "ref.pt")["module"])
        if "int8" in side:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        load_s = time.perf_counter() - start
        for b, prompt in prompts(m, args.batch, args.prompt_tokens).items():
            start = time.perf_counter()
            prompt = np.tile(prompt[:1], (b, 1))                                  # b samples of one prompt
            reference_run(model, torch, prompt[:, :8], 2, m.vocab_size)        # warm-up
            warm = time.perf_counter() - start
            pre, dec, toks = reference_run(model, torch, prompt, args.new_tokens, m.vocab_size)
            results[b] = {"prefill": b * args.prompt_tokens / pre, "decode": b * (args.new_tokens - 1) / dec,
                          "tokens": toks, "warmup_s": warm}
        return {"load_s": load_s, "batches": results}
    if side in GGUF:
        from llamacpp import decode_speed
        return decode_speed(work / GGUF[side], prompts(m, args.batch, args.prompt_tokens), args.new_tokens)
    import mindspore as ms
    import codegeex_ms
    from codegeex_ms.generation import Generator, SamplingConfig
    from codegeex_ms.tokenizer import load as load_tokenizer
    ms.set_context(mode=ms.GRAPH_MODE)
    model = codegeex_ms.load(work / FOLDERS[side], precision={"activation_quant": "int8"} if side == W8A8 else None)
    tokenizer = load_tokenizer(args.tokenizer)
    load_s = time.perf_counter() - start
    sampling = SamplingConfig(max_new_tokens=args.new_tokens, greedy=True)
    max_len = -(-(args.prompt_tokens + args.new_tokens) // 64) * 64
    for b, prompt in prompts(m, args.batch, args.prompt_tokens).items():
        generator = Generator(model, tokenizer, batch_size=b, max_len=max_len)
        compile_s = generator.warmup(args.prompt_tokens)
        r = generator.generate_rows([(list(row), sampling, 1) for row in prompt])  # b prompts, one sample each
        t = r[0].timings
        results[b] = {"prefill": b * args.prompt_tokens / t["prefill_s"],
                      "decode": t["decode_tokens_per_s"],
                      "tokens": [int(i) for i in r[0].token_ids[0]], "warmup_s": compile_s}
    return {"load_s": load_s, "batches": results}


def agreement(tokens: list[int], reference: list[int]) -> str:
    """"yes" for the same greedy tokens, else how many lead the same (greedy decoding diverges for good after one
    different token)."""
    if tokens == reference:
        return "yes"
    same = next((i for i, (a, b) in enumerate(zip(tokens, reference)) if a != b), min(len(tokens), len(reference)))
    return f"no (first {same} of {len(reference)})"


def quantized_bytes(m, int8_head: bool = True) -> int:
    """Weight bytes one int8 decode step reads: int8 Linears (and word embedding/head) + fp32 row scales; the rest
    in fp32 (the position tables are read one row per token, counted whole)."""
    from codegeex_ms.layout import EMBEDDING, is_quantized_weight, parameter_shapes
    total = 0
    for name, shape in parameter_shapes(m).items():
        int8 = is_quantized_weight(name) or (int8_head and name == EMBEDDING)
        total += math.prod(shape) * (1 if int8 else 4) + (shape[0] * 4 if int8 else 0)
    return total


def prepare(work: Path, args) -> None:
    """Random reference weights, saved for the reference sides and converted (fp32) and quantized (int8) for ours."""
    import torch
    from codegeex_ms.convert import main as convert
    from codegeex_ms.quantize_export import quantize_checkpoint
    from reference import reference_model
    cfg = bench_config(args.config)
    torch.manual_seed(0)
    reference = reference_model(cfg.model).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.normal_(0.0, 0.02)
    torch.save({"module": reference.state_dict_for_save_checkpoint()}, work / "ref.pt")
    cfg.save(work / "config.yaml")
    assert convert([str(work / "ref.pt"), str(work / "ours"), "--config", str(work / "config.yaml"),
                    "--tokenizer", str(args.tokenizer)]) == 0
    quantize_checkpoint(work / "ours", work / "ours_int8", embedding=True)
    quantize_checkpoint(work / "ours", work / "ours_int8_fp32_head", embedding=False)
    if LLAMA_Q8 in args.sides or LLAMA_F32 in args.sides:
        try:
            from llamacpp import quantize_q8_0, write_gguf
        except ImportError as e:
            sys.exit(f"the llama.cpp sides need llama-cpp-python and gguf ({e}); bench/llamacpp.py says how to "
                     f"install them, or leave those sides out (--sides)")
        write_gguf(work / GGUF[LLAMA_F32], cfg.model)
        quantize_q8_0(work / GGUF[LLAMA_F32], work / GGUF[LLAMA_Q8])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="codegeex_350m", help="model config name or YAML (default codegeex_350m)")
    p.add_argument("--prompt-tokens", type=int, default=64, help="prompt length (default 64)")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens to generate per sample (default 64)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    p.add_argument("--repeats", type=int, default=3, help="rounds; the sides alternate within a round (default 3)")
    p.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES, metavar="SIDE",
                   help=f"which sides to run (default all: {', '.join(repr(s) for s in SIDES)})")
    p.add_argument("--tokenizer", type=Path, default=ROOT.parent / "shared/tokenizer/codegeex",
                   help="CodeGeeX tokenizer directory (default ../shared/tokenizer/codegeex)")
    p.add_argument("--side", help=argparse.SUPPRESS)      # internal: run one side in this process
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args.work, args)))
        return

    cfg = bench_config(args.config)
    work = Path(tempfile.mkdtemp(prefix="bench_decode_"))      # 3 GB of checkpoints at 350M: removed at the end
    try:
        run_rounds(work, args, cfg)
    finally:
        shutil.rmtree(work, ignore_errors=True)


PAIRS = (("ours fp32", "reference fp32"), (FP32_HEAD, "reference + torch int8"), ("ours int8", "reference fp32"),
         ("ours int8", LLAMA_Q8), ("ours fp32", LLAMA_F32), (W8A8, "reference + torch int8"))


def run_rounds(work: Path, args, cfg) -> None:
    m = cfg.model
    from codegeex_ms.layout import count_parameters
    prepare(work, args)
    params = count_parameters(m)
    nbytes = {"ours fp32": params * 4, "reference fp32": params * 4, "ours int8": quantized_bytes(m),
              W8A8: quantized_bytes(m), FP32_HEAD: quantized_bytes(m),      # its head read through an int8 copy
              "reference + torch int8": quantized_bytes(m, False)}
    if LLAMA_Q8 in args.sides or LLAMA_F32 in args.sides:
        from llamacpp import weight_bytes_per_token
        nbytes.update({side: weight_bytes_per_token(work / GGUF[side]) for side in GGUF})
    bandwidth = [read_bandwidth_gbs()]
    print(f"{args.config}: {params / 1e6:.0f}M parameters; weight bytes per token: " +
          ", ".join(f"{side} {n / 1e9:.3f} GB" for side, n in nbytes.items()) +
          f"; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; "
          f"CODEGEEX_KERNEL_THREADS={os.environ.get('CODEGEEX_KERNEL_THREADS', '(default)')}", file=sys.stderr)
    best: dict = {}            # (side, batch) -> result of the round with the best decode tokens/s
    rounds: list[dict] = []    # per round: (side, batch) -> decode tokens/s
    setup: dict = {}
    passthrough = ["--config", args.config, "--prompt-tokens", str(args.prompt_tokens), "--new-tokens",
                   str(args.new_tokens), "--tokenizer", str(args.tokenizer), "--batch", *map(str, args.batch)]
    round_rates: list[float] = []     # the two-thread read rate before each round (the host's rate drifts)
    for round_ in range(args.repeats):
        order = args.sides if round_ % 2 == 0 else args.sides[::-1]
        rounds.append({})
        round_rates.append(read_bandwidth_gbs(threads=2))
        print(f"round {round_ + 1}/{args.repeats}: two-thread read {round_rates[-1]:.1f} GB/s", file=sys.stderr)
        for side in order:
            out = subprocess.run([sys.executable, __file__, "--side", side, "--work", str(work), *passthrough],
                                 capture_output=True, text=True, cwd=Path(__file__).parent)
            if out.returncode != 0:
                sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
            report = json.loads(out.stdout.strip().splitlines()[-1])
            setup.setdefault(side, report)
            for b, r in report["batches"].items():
                rounds[-1][(side, b)] = r["decode"]
                if (side, b) not in best or r["decode"] > best[(side, b)]["decode"]:
                    best[(side, b)] = r
            print(f"round {round_ + 1}/{args.repeats} {side}: " + ", ".join(
                f"batch {b} {r['decode']:.2f} tokens/s" for b, r in report["batches"].items()), file=sys.stderr)
    bandwidth.append(read_bandwidth_gbs())
    bw = max(bandwidth)
    print(f"read bandwidth (numpy sum, one thread): {bandwidth[0]:.1f} GB/s before, {bandwidth[1]:.1f} GB/s after; "
          f"load average {os.getloadavg()[0]:.2f}")
    print("two-thread read rate before each round: " + ", ".join(f"{r:.1f}" for r in round_rates) + " GB/s")
    print("| batch | side | prefill tokens/s | decode tokens/s | bytes read per token / bandwidth | load + warm-up s "
          "| same greedy tokens as reference fp32 |")
    print("|---|---|---|---|---|---|---|")
    for b in map(str, args.batch):
        ref_tokens = best.get(("reference fp32", b), {}).get("tokens")
        for side in args.sides:
            r = best[(side, b)]
            share = r["decode"] / int(b) * nbytes[side] / (bw * 1e9)
            same = "-" if ref_tokens is None or side in GGUF else agreement(r["tokens"], ref_tokens)
            print(f"| {b} | {side} | {r['prefill']:,.0f} | {r['decode']:.2f} | {share:.0%} | "
                  f"{setup[side]['load_s']:.1f} + {r['warmup_s']:.1f} | {same} |")
    for b in map(str, args.batch):
        d = {side: best[(side, b)]["decode"] for side in args.sides}
        ratios = [f"{x} / {y} = {d[x] / d[y]:.2f}x" for x, y in PAIRS if x in d and y in d]
        print(f"batch {b}, best rounds: " + "; ".join(ratios))
        # the host's bandwidth drifts within minutes: the ratio within each round pairs sides run back to back
        paired = [f"{x} / {y}: " + ", ".join(f"{r[(x, b)] / r[(y, b)]:.2f}x" for r in rounds)
                  for x, y in PAIRS if x in d and y in d]
        print(f"batch {b}, round by round: " + "; ".join(paired))


if __name__ == "__main__":
    main()
