"""Training throughput (tokens/s, MFU) of the compiled train step, beside the reference PyTorch CodeGeeX.

    python bench/train.py [--config codegeex_125m] [--seq-len 256] [--batch 2] [--steps 3]

Both sides train the same shapes in fp32 on random token windows: ours is TrainStep (one @ms.jit step:
forward, EOD-masked loss, backward, loss scaling, clipping, AdamWeightDecay); the peer is codegeex==1.0's
CodeGeeXModel with cross entropy, backward, global-norm clipping and torch.optim.AdamW. MFU is against the
measured FLOP/s of a 2048^3 fp32 matmul on this machine.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from reference import reference_model


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="codegeex_125m", help="model config (default codegeex_125m)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per sample (default 256)")
    p.add_argument("--batch", type=int, default=2, help="samples per step (default 2)")
    p.add_argument("--steps", type=int, default=5,
                   help="timed steps of each, alternating, after one warm-up step (default 5)")
    args = p.parse_args()

    import mindspore as ms
    import torch
    from mindspore import Tensor
    from codegeex_ms.config import apply_overrides, resolve_config
    from codegeex_ms.model import CodeGeeX
    from codegeex_ms.training import TrainStep, flops_per_token, measure_peak_flops

    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = apply_overrides(resolve_config(args.config), [
        f"train.seq_len={args.seq_len}", f"train.micro_batch_size={args.batch}", "model.hidden_dropout=0.0",
        "model.attention_dropout=0.0", "precision.compute_dtype=float32", "train.warmup_steps=0"])
    m = cfg.model
    rng = np.random.default_rng(0)
    windows = rng.integers(0, m.vocab_size, size=(args.steps + 1, args.batch, args.seq_len + 1)).astype(np.int32)
    tokens_per_step = args.batch * args.seq_len
    peak = measure_peak_flops()
    flops = flops_per_token(cfg)

    model = CodeGeeX(cfg)
    model.set_train(True)
    step = TrainStep(model, cfg)
    positions = np.broadcast_to(np.arange(args.seq_len, dtype=np.int32), (args.batch, args.seq_len)).copy()
    mask = np.broadcast_to(np.tril(np.ones((args.seq_len, args.seq_len), np.float32)),
                           (args.batch, args.seq_len, args.seq_len)).copy()

    def ours_step(w):
        batch = [Tensor(w[:, :-1]), Tensor(w[:, 1:]), Tensor(positions), Tensor(mask),
                 Tensor(np.ones((args.batch, args.seq_len), np.float32))]
        loss, _, _ = step.step(*batch)
        loss.asnumpy()

    torch.manual_seed(0)
    ref = reference_model(m).train()
    optimizer = torch.optim.AdamW(ref.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    blocked = torch.tril(torch.ones(1, 1, args.seq_len, args.seq_len)) < 0.5
    pos = torch.arange(args.seq_len).expand(args.batch, args.seq_len)

    def reference_step(w):
        x, y = torch.as_tensor(w[:, :-1], dtype=torch.long), torch.as_tensor(w[:, 1:], dtype=torch.long)
        logits = ref(x, pos, blocked)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        optimizer.step()

    # Alternate the two step by step, so that a slow spell of this shared machine hits both alike.
    ours, theirs = [], []
    for i, w in enumerate(windows):
        for fn, times in ((ours_step, ours), (reference_step, theirs)):
            start = time.perf_counter()
            fn(w)
            if i:                                  # step 0 compiles / warms up
                times.append(time.perf_counter() - start)

    print(f"{args.config}, batch {args.batch} x {args.seq_len} tokens, fp32; measured matmul peak "
          f"{peak / 1e9:.0f} GFLOP/s; {flops / 1e9:.2f} GFLOP per token; torch threads {torch.get_num_threads()}")
    print("| implementation | s/step (best) | tokens/s | MFU |")
    print("|---|---|---|---|")
    for name, times in (("codegeex-ms (MindSpore, one jit step)", ours), ("reference PyTorch + AdamW", theirs)):
        best = min(times)
        print(f"| {name} | {best:.2f} | {tokens_per_step / best:.0f} | {tokens_per_step / best * flops / peak:.1%} |")


if __name__ == "__main__":
    main()
