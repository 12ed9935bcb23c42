"""Prefill and decode speed of the KV-cached engine, side by side with the reference PyTorch CodeGeeX.

    python bench/decode.py [--config codegeex_350m] [--prompt-tokens 64] [--new-tokens 32] [--batch 1 8]

Both implementations run the same random weights (drawn in the reference model, converted with
``python -m codegeex_ms.convert``), fp32 on the CPU, greedy. The reference is ``codegeex==1.0``'s
``CodeGeeXModel`` with its growing ``layer_past`` cache (``pip install --no-deps codegeex==1.0 torch``).
Also reports the memory-bandwidth bound for decoding: every token reads all weights once, so
tokens/s <= read bandwidth / weight bytes (x batch).
"""
from __future__ import annotations

import argparse
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


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="codegeex_350m", help="model config name or YAML (default codegeex_350m)")
    p.add_argument("--prompt-tokens", type=int, default=64, help="prompt length (default 64)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens to generate per sample (default 32)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
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
    work = Path(tempfile.mkdtemp(prefix="bench_decode_"))
    torch.save({"module": reference.state_dict_for_save_checkpoint()}, work / "ref.pt")
    cfg.save(work / "config.yaml")
    assert convert([str(work / "ref.pt"), str(work / "ours"), "--config", str(work / "config.yaml")]) == 0
    ours = codegeex_ms.load(work / "ours")
    tokenizer = load_tokenizer(args.tokenizer)

    params = count_parameters(m)
    weight_bytes = params * 4
    bandwidth = read_bandwidth_gbs()
    print(f"{args.config}: {params / 1e6:.0f}M parameters, fp32 weights {weight_bytes / 1e9:.2f} GB; "
          f"measured read bandwidth {bandwidth:.1f} GB/s; torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} cores", file=sys.stderr)
    rows = []
    rng = np.random.default_rng(0)
    for b in args.batch:
        prompt = rng.integers(0, m.vocab_size, size=(b, args.prompt_tokens))
        max_len = -(-(args.prompt_tokens + args.new_tokens) // 64) * 64
        generator = Generator(ours, tokenizer, batch_size=b, max_len=max_len)
        generator.warmup(args.prompt_tokens)
        cfg_s = SamplingConfig(max_new_tokens=args.new_tokens, greedy=True)
        result = generator.generate(list(prompt[0]), cfg_s)
        t = result.timings
        ours_decode = t["decode_steps"] * b / t["decode_s"]
        ref_prefill, ref_decode, ref_tokens = reference_run(reference, torch, np.tile(prompt[:1], (b, 1)),
                                                            args.new_tokens, m.vocab_size)
        same = ref_tokens[0].tolist()[:len(result.token_ids[0])] == result.token_ids[0]
        bound = bandwidth * 1e9 / weight_bytes * b
        rows.append((b, "codegeex-ms (MindSpore graph, static KV cache)", b * args.prompt_tokens / t["prefill_s"],
                     ours_decode, ours_decode / bound, same))
        ref_rate = b * (args.new_tokens - 1) / ref_decode
        rows.append((b, "reference PyTorch (layer_past cache)", b * args.prompt_tokens / ref_prefill, ref_rate,
                     ref_rate / bound, True))
    print("| batch | implementation | prefill tokens/s | decode tokens/s | share of bandwidth bound | same greedy tokens |")
    print("|---|---|---|---|---|---|")
    for b, name, prefill, decode, share, same in rows:
        print(f"| {b} | {name} | {prefill:,.0f} | {decode:.2f} | {share:.0%} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
