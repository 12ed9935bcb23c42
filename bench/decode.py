"""Prefill and decode speed of the KV-cached engine, side by side with the reference PyTorch CodeGeeX.

    python bench/decode.py [--config codegeex_350m] [--prompt-tokens 64] [--new-tokens 32] [--batch 1 8]

Four sides on the same random weights (drawn in the reference model, converted with
``python -m codegeex_ms.convert``, int8 by ``codegeex_ms.quantize_export.quantize``), greedy, on the CPU: ours fp32,
ours int8 (weight-only, the CPU kernels), the reference ``codegeex==1.0`` ``CodeGeeXModel`` with its growing
``layer_past`` cache in fp32, and the reference after ``torch.ao.quantization.quantize_dynamic(model, {nn.Linear},
dtype=torch.qint8)``. The sides alternate within each of ``--repeats`` rounds; the best round of each is shown.
Also: every token reads all weights once, so the share of the bandwidth bound is bytes read per token x tokens/s /
batch / measured read bandwidth (above 100%: more than one core reads).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from reference import reference_model

ROOT = Path(__file__).resolve().parents[1]


def read_bandwidth_gbs(megabytes: int = 1024) -> float:
    data = np.ones(megabytes * 2**20 // 8, np.float64)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.nbytes / best / 1e9


def reference_run(model, torch, prompt: np.ndarray, new_tokens: int, vocab: int):
    """Greedy decoding with the reference's layer_past cache; returns (prefill s, decode s, tokens)."""
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
    return t_prefill, t_decode, torch.cat(out, 1).numpy()


def quantized_bytes(m) -> int:
    """Weight bytes one int8 decode step reads: int8 Linears and word embedding/head + fp32 row scales; the
    position tables and LayerNorms in fp32 (the position tables are read one row per token, counted whole)."""
    from codegeex_ms.layout import EMBEDDING, is_quantized_weight, parameter_shapes
    total = 0
    for name, shape in parameter_shapes(m).items():
        int8 = is_quantized_weight(name) or name == EMBEDDING
        total += math.prod(shape) * (1 if int8 else 4) + (shape[0] * 4 if int8 else 0)
    return total


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="codegeex_350m", help="model config name or YAML (default codegeex_350m)")
    p.add_argument("--prompt-tokens", type=int, default=64, help="prompt length (default 64)")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens to generate per sample (default 64)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    p.add_argument("--repeats", type=int, default=3, help="rounds; the sides alternate within a round (default 3)")
    p.add_argument("--tokenizer", type=Path, default=ROOT.parent / "shared/tokenizer/codegeex",
                   help="CodeGeeX tokenizer directory (default ../shared/tokenizer/codegeex)")
    args = p.parse_args()

    import torch
    import mindspore as ms
    import codegeex_ms
    from codegeex_ms.config import resolve_config
    from codegeex_ms.convert import main as convert
    from codegeex_ms.generation import Generator, SamplingConfig
    from codegeex_ms.layout import count_parameters
    from codegeex_ms.quantize_export import quantize_checkpoint as quantize
    from codegeex_ms.tokenizer import load as load_tokenizer

    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = resolve_config(args.config).replace(model={"hidden_dropout": 0.0, "attention_dropout": 0.0},
                                              precision={"compute_dtype": "float32", "param_dtype": "float32"})
    m = cfg.model
    torch.manual_seed(0)
    reference = reference_model(m).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.normal_(0.0, 0.02)
    reference_int8 = torch.ao.quantization.quantize_dynamic(reference, {torch.nn.Linear}, dtype=torch.qint8)
    work = Path(tempfile.mkdtemp(prefix="bench_decode_"))
    torch.save({"module": reference.state_dict_for_save_checkpoint()}, work / "ref.pt")
    cfg.save(work / "config.yaml")
    assert convert([str(work / "ref.pt"), str(work / "ours"), "--config", str(work / "config.yaml")]) == 0
    quantize(work / "ours", work / "ours_int8", embedding=True)
    ours = codegeex_ms.load(work / "ours")
    ours_int8 = codegeex_ms.load(work / "ours_int8")
    tokenizer = load_tokenizer(args.tokenizer)

    params = count_parameters(m)
    fp32_bytes, int8_bytes = params * 4, quantized_bytes(m)
    bandwidth = read_bandwidth_gbs()
    print(f"{args.config}: {params / 1e6:.0f}M parameters, fp32 weights {fp32_bytes / 1e9:.2f} GB, int8 "
          f"{int8_bytes / 1e9:.2f} GB; read bandwidth (numpy sum, one thread) {bandwidth:.1f} GB/s; torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    rng = np.random.default_rng(0)
    sampling = SamplingConfig(max_new_tokens=args.new_tokens, greedy=True)
    table = []
    for b in args.batch:
        prompt = rng.integers(0, m.vocab_size, size=(b, args.prompt_tokens))
        max_len = -(-(args.prompt_tokens + args.new_tokens) // 64) * 64
        generators = {}
        for name, model in (("ours fp32", ours), ("ours int8", ours_int8)):
            generators[name] = Generator(model, tokenizer, batch_size=b, max_len=max_len)
            generators[name].warmup(args.prompt_tokens)
        best = {}       # side -> (prefill tokens/s, decode tokens/s, tokens)
        for _ in range(args.repeats):
            for name in ("ours fp32", "reference fp32", "ours int8", "reference + torch int8"):
                if name.startswith("ours"):
                    r = generators[name].generate(list(prompt[0]), sampling)
                    t = r.timings
                    rate = (b * args.prompt_tokens / t["prefill_s"], t["decode_steps"] * b / t["decode_s"], r.token_ids[0])
                else:
                    model = reference if name == "reference fp32" else reference_int8
                    pre, dec, toks = reference_run(model, torch, np.tile(prompt[:1], (b, 1)), args.new_tokens, m.vocab_size)
                    rate = (b * args.prompt_tokens / pre, b * (args.new_tokens - 1) / dec, toks[0].tolist())
                if name not in best or rate[1] > best[name][1]:
                    best[name] = rate
        ref_tokens = best["reference fp32"][2]
        for name in ("ours fp32", "reference fp32", "ours int8", "reference + torch int8"):
            prefill, decode, toks = best[name]
            nbytes = int8_bytes if "int8" in name else fp32_bytes
            share = decode / b * nbytes / (bandwidth * 1e9)
            same = toks[:len(ref_tokens)] == ref_tokens[:len(toks)]
            table.append((b, name, prefill, decode, share, same))
    print("| batch | side | prefill tokens/s | decode tokens/s | bytes read per token / bandwidth | same greedy tokens as reference fp32 |")
    print("|---|---|---|---|---|---|")
    for b, name, prefill, decode, share, same in table:
        print(f"| {b} | {name} | {prefill:,.0f} | {decode:.2f} | {share:.0%} | {'yes' if same else 'no'} |")
    base = {(b, n): d for b, n, _, d, _, _ in table}
    for b in args.batch:
        print(f"batch {b}: ours fp32 / reference fp32 = {base[(b, 'ours fp32')] / base[(b, 'reference fp32')]:.2f}x; "
              f"ours int8 / torch int8 = {base[(b, 'ours int8')] / base[(b, 'reference + torch int8')]:.2f}x; "
              f"ours int8 / reference fp32 = {base[(b, 'ours int8')] / base[(b, 'reference fp32')]:.2f}x")


if __name__ == "__main__":
    main()
