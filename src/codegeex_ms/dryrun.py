"""Compile one rank of an Ascend cluster layout on this machine (MindSpore DryRun), before anyone books the cluster.

    python -m codegeex_ms.dryrun --config codegeex_13b --world 1536 --rank 0 --json rank0.json
    python -m codegeex_ms.dryrun --config codegeex_tiny --world 4 --rank 1 \\
        --set parallel.data_parallel=2 --set parallel.model_parallel=2 --set parallel.optimizer_shard=true

MindSpore's DryRun (``MS_SIMULATION_LEVEL=0`` with ``RANK_SIZE``/``RANK_ID``) compiles the semi-auto-parallel
graph of rank R of an N-device job in one process: the collectives are dummies and nothing is executed. It needs
the device target Ascend, whose runtime libraries this machine does not have, so the Ascend runtime is replaced by
generated do-nothing stand-ins (``codegeex_ms.ascend_standins``, built once from the installed wheel with gcc and
readelf). The compile runs in a child process with that environment, through the same ``init_distributed`` and
``build_train_step`` as ``train.py``, and reports: compile seconds; every parameter and optimizer state with its
global shape, this rank's shape and bytes; the strategy file MindSpore wrote; and an analytic per-device memory
estimate against ``--device-memory-gib``.

What this checks: the parallel setup, shapes, shard strategies and that the graph compiles. What it does not:
numbers (simulated steps return dummies) or measured memory (MindSpore's memory statistics, level 1, need the
Ascend graph engine). The layout is compiled in MindSpore's DryRun; it has not been run on Ascend hardware.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import cli
from .cli import ArgumentParser, non_negative_int, positive_float, positive_int
from .config import Config, ConfigError, apply_overrides, resolve_config

DTYPE_BYTES = {"Float32": 4, "Float16": 2, "BFloat16": 2, "Int32": 4, "Int64": 8, "Int8": 1, "UInt8": 1, "Bool": 1,
               "float32": 4, "float16": 2, "bfloat16": 2}
HONEST = "compiled in MindSpore's DryRun; not run on Ascend hardware"


# ---------------------------------------------------------------------------------------------------------
# The child: compile rank R's train step under DryRun

def compile_rank(cfg: Config, rank: int, world: int, out_dir: Path, save: bool = False) -> dict:
    """Build the model and train step as train.py does and compile one step of ``rank``; runs inside the
    DryRun environment (see ``dryrun_environment``)."""
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor
    from .parallel import init_distributed, stage_parameter_names, strategy_path
    from .training import batch_inputs, build_train_step, data_layout

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("Ascend")
    layout = init_distributed(cfg, out_dir)
    if (layout.rank, layout.world) != (rank, world):
        raise RuntimeError(f"DryRun set up rank {layout.rank} of {layout.world}, not {rank} of {world}")
    model, step = build_train_step(cfg, layout)
    weights = list(model.get_parameters())
    states = step.state_parameters()
    if step.pipeline_reducer is not None:
        states += list(step.pipeline_reducer.accu_grads)
    global_shapes = {p.name: tuple(p.shape) for p in weights + states}
    data_cfg, _, _ = data_layout(cfg, rank, world, layout.data_parallel_reduce)
    ids = np.random.default_rng(0).integers(0, cfg.model.vocab_size, (data_cfg.train.micro_batch_size,
                                                                       cfg.train.seq_len + 1))
    batch = [Tensor(x) for x in batch_inputs(ids, cfg.model.eod_token_id, cfg.train.eod_reset)]
    start = time.perf_counter()
    if cfg.train.grad_accumulation == 1:
        step.step(*batch)
        compiled = "step (forward, backward, update)"
    else:       # the accumulation graphs take each other's outputs, which DryRun does not produce
        step.grads(*batch)
        compiled = "grads (forward, backward; the update graph is not compiled with grad_accumulation > 1)"
    seconds = time.perf_counter() - start
    strategy = strategy_path(out_dir, rank)
    described = stage_parameter_names(cfg, strategy)
    rows = []
    for kind, params in (("weight", weights), ("state", states)):
        for p in params:
            shape = tuple(p.shape)
            rows.append({"name": p.name, "kind": kind, "dtype": str(p.dtype),
                         "global_shape": list(global_shapes[p.name]),
                         "rank_shape": list(shape), "bytes": math.prod(shape) * DTYPE_BYTES.get(str(p.dtype), 4),
                         "held": described is None or p.name in described})
    checkpoint_file = None
    if save:
        from .reshard import rank_file
        checkpoint_file = rank_file(out_dir / "checkpoint", rank)
        checkpoint_file.parent.mkdir(parents=True, exist_ok=True)
        held = {r["name"] for r in rows if r["held"] and not r["name"].startswith("accu_grads.")}
        ms.save_checkpoint([{"name": p.name, "data": p} for p in weights + states if p.name in held],
                           str(checkpoint_file))
    return {"checkpoint_file": str(checkpoint_file) if checkpoint_file else None, "rank": rank, "world": world,
            "compile_s": round(seconds, 2), "compiled": compiled,
            "batch_shape": list(batch[0].shape), "strategy_file": str(strategy) if strategy.is_file() else None,
            "parameters": rows}


def compile_generation(cfg: Config, batch_size: int, cache: int) -> dict:
    """Build the inference engine as infer.py's Generator does and compile its graphs on one device: the one-row
    prefill engine (its smallest bucket), the cache-row copy into the decode engine, the first-token sampler and the
    decode step (static KV caches, sampling in the graph); runs inside the DryRun environment. With int8 weights and
    float16/bfloat16 compute the Linears and the head use Ascend's ``WeightQuantBatchMatmul``; the report counts
    the cells that do."""
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor
    from mindspore.nn.utils import no_init_parameters
    from .generation import CacheRowCopy, CachedCodeGeeX, Sampler, prefill_bucket
    from .model import CodeGeeX

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("Ascend")
    with no_init_parameters():              # a checkpoint would fill them; the compile needs shapes and dtypes only
        model = CodeGeeX(cfg)
    model.set_train(False)
    cached = CachedCodeGeeX(model, batch_size, cache)
    prefill = CachedCodeGeeX(model, 1, cache, return_logits=True, cache_name="prefill_cache")
    copy, first_sampler = CacheRowCopy(prefill, cached), Sampler(cfg.model.vocab_size, cached.sampler.candidates)
    b = batch_size

    def sampling(rows):
        return (Tensor(np.zeros((rows, cached.sampler.candidates), np.float32)), Tensor(np.ones(rows, np.float32)),
                Tensor(np.ones(rows, np.int32)), Tensor(np.full(rows, 2.0, np.float32)))

    def zeros(rows):
        return Tensor(np.zeros(rows, np.int32))

    calls = [(1, prefill_bucket(1, cache)), (b, 1)]
    start = time.perf_counter()
    # DryRun compiles each graph and returns a dummy instead of running it
    prefill(Tensor(np.full(calls[0], cfg.model.eod_token_id, np.int32)), zeros(1), zeros(1), *sampling(1))
    copy(zeros(1))
    first_sampler(Tensor(np.zeros((b, model.word_embeddings.weight.shape[0]), np.float32)), *sampling(b))
    cached(Tensor(np.full(calls[1], cfg.model.eod_token_id, np.int32)), zeros(b), zeros(b), *sampling(b))
    seconds = time.perf_counter() - start
    int8_cells = [name for name, cell in model.cells_and_names() if getattr(cell, "ascend_int8", None) is not None]
    parameters = list(cached.get_parameters()) + list(prefill.key_caches) + list(prefill.value_caches)
    rows = [{"name": p.name, "kind": "kv cache" if p.name.startswith(("kv_cache.", "prefill_cache.")) else "weight",
             "dtype": str(p.dtype), "global_shape": list(p.shape), "rank_shape": list(p.shape),
             "bytes": math.prod(p.shape) * DTYPE_BYTES.get(str(p.dtype), 4), "held": True}
            for p in parameters]
    return {"rank": 0, "world": 1, "compile_s": round(seconds, 2),
            "compiled": f"generation: one-row prefill ({calls[0][1]}-token bucket), cache-row copy, first-token "
                        f"sampler and decode graphs, batch {batch_size}, KV cache {cache} positions",
            "calls": calls, "weight_quant_batch_matmul_cells": int8_cells,
            "parameters": rows}


# ---------------------------------------------------------------------------------------------------------
# Analytic memory estimate for one rank

@dataclass
class MemoryItem:
    name: str
    bytes: int


def _mp_slice_elements(name: str, shape: tuple[int, ...], cfg: Config) -> int:
    """Elements of the model-parallel slice (before optimizer sharding) of a weight."""
    from .reshard import tensor_map
    mp = cfg.parallel.model_parallel
    return math.prod(s // mp if m == 0 else s for s, m in zip(shape, tensor_map(name, len(shape), cfg)))


def _layer_of(name: str) -> str | None:
    """``layers.3.mlp...`` -> ``layers.3``, ``top_query_layer...`` -> ``top_query_layer``, else None."""
    if name.startswith("layers."):
        return ".".join(name.split(".")[:2])
    return "top_query_layer" if name.startswith("top_query_layer.") else None


def memory_estimate(cfg: Config, rows: list[dict], rank: int) -> list[MemoryItem]:
    """Per-device bytes of one training step of ``rank``, item by item (biggest first).

    Weights, optimizer moments and pipeline gradient accumulators: what this rank holds as compiled (under
    pipeline stages, the parameters its stage's strategy file describes). Gradients: the model-parallel slice of
    every weight the rank holds, in the parameter dtype (they exist whole before the optimizer shards them).
    Activations of one micro-batch per layer, after Korthikanti et al. 2022 ("Reducing Activation Recomputation
    in Large Transformer Models", table 2, tensor parallel t, no sequence parallel): ``s b h (10 + 24/t) + 5 a s^2
    b / t`` bytes for 2-byte activations, scaled to the compute dtype, plus the wider softmax when its dtype is;
    with recompute only each layer's input ``s b h`` stays, plus one layer's activations while it is recomputed.
    Under 1F1B pipelining stage k holds ``stages - k`` micro-batches in flight. The fp32 logits and their
    gradient (``2 b s V/t`` x 4 bytes) sit on the last stage. Working copies of the weights in the compute dtype:
    all layers' without recompute (the backward needs them), two layers' with it."""
    m, p, t = cfg.model, cfg.parallel, cfg.train
    pdt, cdt = DTYPE_BYTES[cfg.precision.param_dtype], DTYPE_BYTES[cfg.precision.compute_dtype]
    stages = p.pipeline_stages
    stage = rank // (p.data_parallel * p.model_parallel) if stages > 1 else 0
    held = [r for r in rows if r["held"]]
    weights = [r for r in held if r["kind"] == "weight"]
    moments = [r for r in held if r["name"].startswith(("adam_m.", "adam_v."))]
    accumulators = [r for r in held if r["name"].startswith("accu_grads.")]
    layers = sorted({_layer_of(r["name"]) for r in weights} - {None})
    mp_slice = {r["name"]: _mp_slice_elements(r["name"], tuple(r["global_shape"]), cfg) for r in weights}
    b = t.micro_batch_size // (p.micro_batches if stages > 1 else 1)
    s, h, a, tp = t.seq_len, m.hidden_size, m.num_heads, p.model_parallel
    per_layer = s * b * h * (10 + 24 / tp) * cdt / 2 + 5 * a * s * s * b / tp * cdt / 2
    if DTYPE_BYTES[cfg.precision.softmax_dtype] > cdt:
        per_layer += a * s * s * b / tp * (DTYPE_BYTES[cfg.precision.softmax_dtype] - cdt)
    in_flight = stages - stage if stages > 1 else 1
    n = len(layers)
    if p.recompute:
        activations = (n * s * b * h * cdt + per_layer) * in_flight
    else:
        activations = n * per_layer * in_flight
    vocab_split = p.model_parallel if not p.vocab_emb_dp else 1
    last_stage = stage == stages - 1
    one_layer = sum(v for k, v in mp_slice.items() if layers and _layer_of(k) == layers[0])
    items = [
        MemoryItem(f"weights ({cfg.precision.param_dtype}, this rank's slices)", sum(r["bytes"] for r in weights)),
        MemoryItem(f"gradients ({cfg.precision.param_dtype}, model-parallel slices)", sum(mp_slice.values()) * pdt),
        MemoryItem("optimizer moments (fp32 adam m and v, after optimizer sharding)", sum(r["bytes"] for r in moments)),
        MemoryItem("pipeline gradient accumulators", sum(r["bytes"] for r in accumulators)),
        MemoryItem(f"activations ({n} layers x {in_flight} micro-batch{'es' if in_flight > 1 else ''} of {b}, "
                   f"{'recompute' if p.recompute else 'no recompute'})", int(activations)),
        MemoryItem("logits and their gradient (fp32)",
                   int(2 * b * s * m.padded_vocab_size / vocab_split * 4) if last_stage else 0),
    ]
    if cdt != pdt:
        items.append(MemoryItem(f"{cfg.precision.compute_dtype} working copies of the weights",
                                one_layer * cdt * (2 if p.recompute else n)))
    comm = one_layer * pdt * p.gradient_aggregation_group
    items.append(MemoryItem(f"communication buffers (gradient all-reduce fused over {p.gradient_aggregation_group} "
                            f"layer{'s' if p.gradient_aggregation_group > 1 else ''})", int(comm)))
    return sorted([i for i in items if i.bytes > 0], key=lambda i: -i.bytes)


# ---------------------------------------------------------------------------------------------------------
# The parent: validate, prepare the stand-ins, run the child, report

def dryrun_environment(world: int, rank: int) -> dict[str, str]:
    from .ascend_standins import ensure_standins, environment
    root = ensure_standins()
    env = {**os.environ, **environment(root)}
    env.update({"MS_SIMULATION_LEVEL": "0", "RANK_SIZE": str(world), "RANK_ID": str(rank),
                "GLOG_v": env.get("GLOG_v", "3")})
    for name in ("MS_WORKER_NUM", "MS_ROLE", "MS_SCHED_HOST", "MS_SCHED_PORT"):    # not an msrun job
        env.pop(name, None)
    return env


def check_layout(cfg: Config, world: int, rank: int) -> None:
    """The errors a layout gets before anything is compiled (the same checks as train.py)."""
    if world < 1:
        raise ConfigError(f"--world must be >= 1, got {world}")
    if not 0 <= rank < world:
        raise ConfigError(f"--rank {rank} is not a rank of a {world}-device job (0..{world - 1})")
    from .parallel import check_layout as check_parallel_layout
    check_parallel_layout(cfg, world)


class DryRunError(RuntimeError):
    """A DryRun compile failed or ran past its timeout (the message holds the child's log tail)."""


def run(cfg: Config, world: int, rank: int, out_dir: Path, save: bool = False, timeout: float = 3600,
        generation: tuple[int, int] | None = None) -> dict:
    """Compile rank ``rank`` in a child process and return its report (raises DryRunError with its log tail).
    ``save``: also write the rank's parameters and optimizer state (its slices of the initial values) to
    ``out_dir/checkpoint/rank_R/checkpoint_R.ckpt``, the layout of a sharded run checkpoint. ``generation``:
    (batch size, KV cache positions): compile the inference engine on one device instead of a train step."""
    check_layout(cfg, world, rank)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / f"config_rank_{rank}.yaml"
    cfg.save(config_file)
    result_file = out_dir / f"compile_rank_{rank}.json"
    result_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "codegeex_ms.dryrun", "--child", str(config_file), "--world", str(world),
               "--rank", str(rank), "--out", str(out_dir)] + (["--save-checkpoint"] if save else [])
    if generation is not None:
        command += ["--generate", "--batch-size", str(generation[0]), "--cache", str(generation[1])]
    with tempfile.TemporaryDirectory() as work:          # MindSpore writes rank_0/ and kernel_meta/ into the cwd
        try:
            proc = subprocess.run(command, env=dryrun_environment(world, rank), cwd=work, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DryRunError(f"the DryRun compile of rank {rank} did not finish within --timeout {timeout:g} s") \
                from None
    if proc.returncode != 0 or not result_file.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        how = f"killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0 else \
            f"exit {proc.returncode}"
        raise DryRunError(f"the DryRun compile of rank {rank} failed ({how}):\n{tail}")
    return json.loads(result_file.read_text())


def report(cfg: Config, result: dict, device_memory_gib: float) -> dict:
    """The child's result plus the memory estimate and the fit verdict."""
    items = memory_estimate(cfg, result["parameters"], result["rank"])
    total = sum(i.bytes for i in items)
    budget = int(device_memory_gib * (1 << 30))
    return {**result, "note": HONEST,
            "memory_estimate": {"items": [{"name": i.name, "bytes": i.bytes} for i in items], "total_bytes": total,
                                "device_bytes": budget, "fits": total <= budget},
            "rank_bytes": {kind: sum(r["bytes"] for r in result["parameters"] if r["kind"] == kind and r["held"])
                           for kind in ("weight", "state")}}


def generation_report(result: dict, device_memory_gib: float) -> dict:
    """The child's generation result plus device memory: weights and KV cache (activations of a decode step are
    a few megabytes; the prefill's are the bucket's, small next to the weights)."""
    items = [MemoryItem(f"{kind}s", sum(r["bytes"] for r in result["parameters"] if r["kind"] == kind))
             for kind in ("weight", "kv cache")]
    total, budget = sum(i.bytes for i in items), int(device_memory_gib * (1 << 30))
    return {**result, "note": HONEST,
            "memory_estimate": {"items": [{"name": i.name, "bytes": i.bytes} for i in items], "total_bytes": total,
                                "device_bytes": budget, "fits": total <= budget},
            "rank_bytes": {"weight": items[0].bytes, "state": items[1].bytes}}     # state: the KV cache


def generation_summary(cfg: Config, rep: dict) -> str:
    int8 = rep["weight_quant_batch_matmul_cells"]
    mem = rep["memory_estimate"]
    pr = cfg.precision
    lines = [f"one device, {rep['compiled']}: {HONEST}, in {rep['compile_s']:.1f} s",
             f"  precision: weights {pr.weight_quant if pr.weight_quant != 'none' else pr.param_dtype}, embedding "
             f"{pr.embedding_quant if pr.embedding_quant != 'none' else pr.param_dtype}, compute {pr.compute_dtype}; "
             f"{len(int8)} cells use WeightQuantBatchMatmul"
             + (f" ({int8[0]}, ..., {int8[-1]})" if int8 else ""),
             f"  memory estimate {_gib(mem['total_bytes'])} of {_gib(mem['device_bytes'])}: "
             + ("fits" if mem["fits"] else "DOES NOT FIT")]
    for item in mem["items"]:
        lines.append(f"    {_gib(item['bytes']):>12}  {item['name']}")
    return "\n".join(lines)


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 28 else f"{n / (1 << 20):.1f} MiB"


def summary(cfg: Config, rep: dict) -> str:
    p = cfg.parallel
    held = [r for r in rep["parameters"] if r["held"]]
    sliced = sum(1 for r in held if r["rank_shape"] != r["global_shape"])
    mem = rep["memory_estimate"]
    lines = [f"rank {rep['rank']} of {rep['world']} (dp {p.data_parallel} x mp {p.model_parallel} x pp "
             f"{p.pipeline_stages}, optimizer shard {p.optimizer_shard}"
             f"{f' over {p.optimizer_shard_size}' if p.optimizer_shard_size else ''}): {rep['compiled']} {HONEST}, "
             f"in {rep['compile_s']:.1f} s",
             f"  batch fed per step {rep['batch_shape']}; holds {len(held)} of {len(rep['parameters'])} parameters and "
             f"states, {sliced} of them sliced; weights {_gib(rep['rank_bytes']['weight'])}, optimizer and other "
             f"state {_gib(rep['rank_bytes']['state'])}",
             f"  strategy file {rep['strategy_file']}",
             f"  memory estimate {_gib(mem['total_bytes'])} of {_gib(mem['device_bytes'])}: "
             + ("fits" if mem["fits"] else "DOES NOT FIT")]
    for item in mem["items"]:
        lines.append(f"    {_gib(item['bytes']):>12}  {item['name']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m codegeex_ms.dryrun", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--config", help="model config YAML or shipped name (codegeex_13b, codegeex_tiny, ...)")
    p.add_argument("--world", type=positive_int,
                   help="devices of the job (data x model x pipeline parallel); not with --generate (one device)")
    p.add_argument("--rank", type=non_negative_int, default=0, help="the rank whose graph is compiled (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. parallel.model_parallel=2 (repeatable)")
    p.add_argument("--out", type=Path, help="folder for the strategy file and the compile record "
                                            "(default: a new temporary folder, printed)")
    p.add_argument("--json", type=Path, help="also write the report (parameters, shapes, bytes, memory) as JSON")
    p.add_argument("--device-memory-gib", type=positive_float, default=32.0,
                   help="device memory the estimate is checked against (default 32, the Ascend 910's HBM)")
    p.add_argument("--timeout", type=positive_float, default=3600, help="seconds the compile may take (default 3600)")
    p.add_argument("--save-checkpoint", action="store_true",
                   help="also save the rank's slices of the initial weights and optimizer state to "
                        "OUT/checkpoint/rank_R/checkpoint_R.ckpt (merge all ranks' files with "
                        "python -m codegeex_ms.reshard merge)")
    gen = p.add_argument_group("inference (--generate)")
    gen.add_argument("--generate", action="store_true",
                     help="compile the inference engine (KV-cached prefill and decode graphs, as infer.py runs "
                          "them) on one device instead of a train step; with precision.weight_quant=int8 and "
                          "float16/bfloat16 compute its Linears use Ascend's WeightQuantBatchMatmul")
    gen.add_argument("--batch-size", type=positive_int, default=1, help="--generate: rows decoded together (default 1)")
    gen.add_argument("--cache", type=positive_int, default=128,
                     help="--generate: KV cache positions (default 128; at most the model's positions)")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:                              # inside the DryRun environment
        cfg = resolve_config(args.child)
        if args.generate:
            result = compile_generation(cfg, args.batch_size, args.cache)
        else:
            result = compile_rank(cfg, args.rank, args.world, args.out, save=args.save_checkpoint)
        (args.out / f"compile_rank_{args.rank}.json").write_text(json.dumps(result))
        return 0
    if not args.config:
        raise ConfigError("give --config (a YAML file or a shipped name such as codegeex_13b)")
    if args.device_memory_gib <= 0:
        raise ConfigError(f"--device-memory-gib must be > 0, got {args.device_memory_gib}")
    cfg = apply_overrides(resolve_config(args.config), args.set) if args.set else resolve_config(args.config)
    if args.generate:
        if args.world not in (None, 1) or args.rank or args.save_checkpoint:
            raise ConfigError("--generate compiles the inference engine on one device: no --world, --rank "
                              "or --save-checkpoint")
        if args.cache > cfg.model.max_position_embeddings:
            raise ConfigError(f"--cache {args.cache} exceeds the model's {cfg.model.max_position_embeddings} "
                              "positions")
        cfg = cfg.replace(parallel={"data_parallel": 1, "model_parallel": 1, "pipeline_stages": 1,
                                    "micro_batches": 1, "optimizer_shard": False, "optimizer_shard_size": 0,
                                    "recompute": False})
        args.world = 1
    elif args.world is None:
        raise ConfigError("give --world (the devices of the job), or --generate for the inference engine")
    check_layout(cfg, args.world, args.rank)
    out = args.out or Path(tempfile.mkdtemp(prefix="codegeex-dryrun-"))
    if args.generate:
        rep = generation_report(run(cfg, 1, 0, out, timeout=args.timeout,
                                    generation=(args.batch_size, args.cache)), args.device_memory_gib)
    else:
        rep = report(cfg, run(cfg, args.world, args.rank, out, args.save_checkpoint, args.timeout),
                     args.device_memory_gib)
    print(generation_summary(cfg, rep) if args.generate else summary(cfg, rep))
    if args.json:
        from .fileio import atomic_write_text
        atomic_write_text(args.json, json.dumps(rep, indent=1))
        print(f"  report {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
