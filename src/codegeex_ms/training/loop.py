"""The training loop: resume from the latest complete checkpoint, steps with gradient accumulation, validation,
the log line, checkpoints, metrics and the loss plot, a clean stop on SIGINT/SIGTERM."""
from __future__ import annotations

import json
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
from mindspore import Tensor

from ..config import Config, ConfigError
from ..fileio import atomic_write_text, pyplot, save_figure
from ..model import CodeGeeX
from ..parallel import RankLayout, stage_parameter_names, strategy_path
from ..run_folder import RunFolder
from ..run_checkpoint import (all_ranks_agree, complete_checkpoints, load_run_checkpoint, save_run_checkpoint,
                              save_sharded_run_checkpoint)
from ..data.batches import TokenBatches, data_layout
from .step import TrainStep, build_train_step, flops_per_token, lr_at, measure_peak_flops


def plot_run(metrics: list[dict], path: Path) -> None:
    plt = pyplot()
    train = [m for m in metrics if "loss" in m]
    val = [m for m in metrics if "val_loss" in m]
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([m["step"] for m in train], [m["loss"] for m in train], label="train", lw=1)
    if val:
        ax.plot([m["step"] for m in val], [m["val_loss"] for m in val], "o-", label="validation")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    ax_lr.plot([m["step"] for m in train], [m["lr"] for m in train], color="gray")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    fig.tight_layout()
    save_figure(fig, path)

class StopSignal:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so the run saves a checkpoint and exits."""

    def __init__(self):
        self.received = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        self.received = signal.Signals(signum).name

@dataclass
class RunResult:
    steps: int
    losses: list[float]
    stopped_by: str | None
    last_checkpoint: Path | None

FRESH_STATE = {"step": 0, "micro_batches": 0, "skipped_steps": 0}

def _resume(run_dir: Path, model: CodeGeeX, step_fn: TrainStep, cfg: Config, layout: RankLayout, log) -> dict:
    """Restore the newest checkpoint that every rank can load (an unreadable or incomplete one falls back to the
    one before) and return its state; a fresh state when there is none."""
    rank, sharded = layout.rank, layout.sharded_checkpoints
    held = None
    if sharded and strategy_path(run_dir, rank).is_file():
        held = stage_parameter_names(cfg, strategy_path(run_dir, rank))
    for folder in reversed(complete_checkpoints(run_dir)):
        try:
            state, problem = load_run_checkpoint(folder, model, step_fn.state_parameters(),
                                                 rank if sharded else None, held), None
        except ValueError as e:
            state, problem = None, str(e)
        if sharded and not all_ranks_agree(problem is None):
            problem = problem or f"checkpoint {folder} is unusable on another rank"
        if problem is None:
            log(f"resumed from {folder} at step {state['step']}")
            return state
        log(f"warning: {problem}; trying the previous checkpoint")
    log(f"no usable checkpoint in {run_dir}; starting from scratch")
    return dict(FRESH_STATE)

def _optimizer_step(step_fn: TrainStep, batches, grad_accumulation: int) -> tuple[float, bool, float]:
    """One optimizer step over ``grad_accumulation`` micro-batches: (mean loss, gradients finite, gradient norm)."""
    if grad_accumulation == 1:
        loss, finite, norm = step_fn.step(*[Tensor(x) for x in next(batches)])
        return float(loss.asnumpy()), bool(finite.asnumpy()), float(norm.asnumpy())
    total, loss = None, 0.0
    for _ in range(grad_accumulation):
        micro_loss, grads = step_fn.grads(*[Tensor(x) for x in next(batches)])
        # mutable: a tuple of tensors is otherwise a compile-time constant, recompiled every call
        grads = ms.mutable(grads)
        total = grads if total is None else ms.mutable(step_fn.accumulate(total, grads))
        loss += float(micro_loss.asnumpy()) / grad_accumulation
    finite, norm = step_fn.apply(total, Tensor(float(grad_accumulation), ms.float32))
    return loss, bool(finite.asnumpy()), float(norm.asnumpy())

def _validation_loss(model: CodeGeeX, step_fn: TrainStep, batches: TokenBatches, count: int) -> float:
    """The mean loss of the first ``count`` validation batches, in inference mode."""
    model.set_train(False)
    values = [float(step_fn.evaluate(*[Tensor(x) for x in b]).asnumpy())
              for _, b in zip(range(count), batches.iterate(epochs=1))]
    model.set_train(True)
    return sum(values) / len(values)

def _log_line(record: dict) -> str:
    val = f" | val {record['val_loss']:.4f}" if "val_loss" in record else ""
    skipped = " | SKIPPED (overflow)" if record["skipped"] else ""
    return (f"step {record['step']:>6} | loss {record['loss']:.4f}{val} | lr {record['lr']:.2e} "
            f"| grad {record['grad_norm']:.3f} | scale {record['loss_scale']:.0f}{skipped} "
            f"| {record['tokens_per_s']:.0f} tok/s | mfu {record['mfu']:.1%}")

def train(cfg: Config, data_dir: Path, run_dir: Path, tokenizer: str | None = None, resume: bool = False,
          layout: RankLayout = RankLayout(), log=print) -> RunResult:
    """Train ``cfg`` on the shards in ``data_dir``, writing checkpoints, metrics.jsonl and loss.png to ``run_dir``.

    ``layout`` (from ``parallel.init_distributed``): this process's rank, the world size, who reduces the
    gradients, and whether every rank saves (and resumes from) its own slices, as semi_auto_parallel needs (with
    the strategy files MindSpore writes to ``parallel.strategy_path(run_dir, rank)``)."""
    t = cfg.train
    rank, world, sharded_checkpoints = layout.rank, layout.world, layout.sharded_checkpoints
    data_cfg, data_rank, data_world = data_layout(cfg, rank, world, layout.data_parallel_reduce)
    train_batches = TokenBatches(data_dir, "train", data_cfg, data_rank, data_world)
    try:
        val_batches = (TokenBatches(data_dir, "validation", data_cfg, data_rank, data_world, shuffle=False)
                       if t.eval_batches else None)
    except (FileNotFoundError, ValueError) as e:
        log(f"note: no validation loss ({e})")
        val_batches = None
    model, step_fn = build_train_step(cfg, layout)

    if not resume and complete_checkpoints(run_dir):
        raise ConfigError(f"{run_dir} holds checkpoints of an earlier run; resume it or start in a new folder")
    run = RunFolder(run_dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in run.unfinished_checkpoints():
            shutil.rmtree(stale)
    state = _resume(run_dir, model, step_fn, cfg, layout, log) if resume else dict(FRESH_STATE)
    metrics_path = run.metrics
    metrics = ([json.loads(line) for line in metrics_path.read_text().splitlines()]
               if metrics_path.exists() and resume else [])
    metrics = [m for m in metrics if m["step"] <= state["step"]]
    if rank == 0:
        atomic_write_text(metrics_path, "".join(json.dumps(m) + "\n" for m in metrics))
        cfg.save(run.config)

    peak = t.peak_flops or measure_peak_flops()
    tokens_per_step = data_cfg.train.micro_batch_size * t.grad_accumulation * t.seq_len * data_world
    flops_token = flops_per_token(cfg)
    stop = StopSignal()
    batches = train_batches.iterate(skip=state["micro_batches"])
    losses, last_checkpoint, saved_at = [], None, None

    def save():
        if sharded_checkpoints:
            path = save_sharded_run_checkpoint(run_dir, model, step_fn.state_parameters(), state,
                                               t.keep_checkpoints, tokenizer, rank)
        else:
            path = (save_run_checkpoint(run_dir, model, step_fn.state_parameters(), state, t.keep_checkpoints,
                                        tokenizer) if rank == 0 else None)
        if rank == 0:
            plot_run(metrics, run.plot)
        return path

    while state["step"] < t.max_steps and stop.received is None:
        start = time.perf_counter()
        loss, finite, norm = _optimizer_step(step_fn, batches, t.grad_accumulation)
        elapsed = time.perf_counter() - start
        lr = lr_at(t, state["step"] - state["skipped_steps"])
        state["micro_batches"] += t.grad_accumulation
        state["skipped_steps"] += 0 if finite else 1
        state["step"] += 1
        losses.append(loss)
        record = {"step": state["step"], "loss": loss, "lr": lr, "grad_norm": norm,
                  "loss_scale": step_fn.loss_scale, "skipped": not finite, "tokens_per_s": tokens_per_step / elapsed,
                  "mfu": tokens_per_step / elapsed * flops_token / (peak * world)}
        if val_batches is not None and state["step"] % t.eval_every == 0:
            record["val_loss"] = _validation_loss(model, step_fn, val_batches, t.eval_batches)
        metrics.append(record)
        if rank == 0:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if state["step"] % t.log_every == 0 or "val_loss" in record or not finite:
                log(_log_line(record))
        if state["step"] % t.save_every == 0 or state["step"] == t.max_steps:
            last_checkpoint, saved_at = save(), state["step"]
    if stop.received is not None and saved_at != state["step"]:
        last_checkpoint = save()
        log(f"stopped by {stop.received} at step {state['step']}; continue with --resume")
    return RunResult(state["step"], losses, stop.received, last_checkpoint)
