"""Training: the CodeGeeX recipe as one compiled train step, exact resume, metrics and plots.

The step is functional (value_and_grad -> all-reduce -> unscale -> finite check -> clip -> AdamWeightDecay)
so it runs on CPU as well as Ascend: MindSpore's loss-scale wrapper cells need an NPU-only op. The loss is
the mean cross entropy over positions whose *input* is not EOD, normalised by the token count of the whole
global batch, so N data-parallel ranks compute exactly the single-process loss and gradients.
"""
from __future__ import annotations

import json
import math
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.nn.learning_rate_schedule import LearningRateSchedule

from .config import Config, TrainConfig
from .data.pack import COLUMN, shard_files
from .fileio import atomic_write_text, pyplot, save_figure
from .layout import count_parameters, is_no_decay
from .masks import eod_reset_masks, loss_mask as eod_loss_mask
from .model import CodeGeeX
from .parallel import RankLayout, stage_parameter_names, strategy_path
from .run_checkpoint import (all_ranks_agree, complete_checkpoints, load_run_checkpoint, save_run_checkpoint,
                             save_sharded_run_checkpoint)


# ---------------------------------------------------------------------------------------------------------
# Learning rate

def lr_at(cfg: TrainConfig, step: int) -> float:
    """The schedule in plain Python (linear warm-up, then cosine to min_lr, as the 13B run)."""
    if step < cfg.warmup_steps:
        return cfg.lr * step / cfg.warmup_steps
    progress = min(step, cfg.decay_steps) / cfg.decay_steps
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


class WarmupCosineLR(LearningRateSchedule):
    """``lr_at`` as a graph-side schedule for the optimizer (evaluated at the optimizer's global step)."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.lr, self.min_lr = cfg.lr, cfg.min_lr
        self.warmup, self.decay = float(max(cfg.warmup_steps, 1)), float(cfg.decay_steps)
        self.has_warmup = cfg.warmup_steps > 0

    def construct(self, global_step):
        step = global_step.astype(ms.float32)
        progress = ops.minimum(step, self.decay) / self.decay
        cosine = self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + ops.cos(math.pi * progress))
        if self.has_warmup:
            return ops.select(step < self.warmup, self.lr * step / self.warmup, cosine)
        return cosine


# ---------------------------------------------------------------------------------------------------------
# Data

class TokenBatches:
    """Deterministic, rank-sharded, resumable batches from MindRecord shards.

    Epoch e visits the samples in ``permutation(seed, e)``; rank r of N takes every N-th sample of that order,
    so the N ranks of a data-parallel run see exactly the samples a single process sees in one global batch.
    """

    def __init__(self, data_dir: Path, split: str, cfg: Config, rank: int = 0, world: int = 1, shuffle: bool = True):
        import mindspore.dataset as ds
        self.files = shard_files(data_dir, split)
        self.batch, self.seq_len = cfg.train.micro_batch_size, cfg.train.seq_len
        self.eod, self.eod_reset = cfg.model.eod_token_id, cfg.train.eod_reset
        self.rank, self.world, self.shuffle, self.seed = rank, world, shuffle, cfg.train.seed
        probe = ds.MindDataset(self.files, columns_list=[COLUMN], shuffle=False)
        self.size = probe.get_dataset_size()
        width = next(probe.create_tuple_iterator(output_numpy=True))[0].shape[0] if self.size else 0
        if width != self.seq_len + 1:
            raise ValueError(f"{data_dir}: {split} samples hold {width} ids, but train.seq_len + 1 = "
                             f"{self.seq_len + 1}; prepare the data with --seq-len {self.seq_len}")
        self.batches_per_epoch = self.size // world // self.batch
        if self.batches_per_epoch == 0:
            raise ValueError(f"{data_dir}: the {split} split has {self.size} samples, fewer than one global batch "
                             f"({self.batch} x {world} ranks)")

    def _order(self, epoch: int) -> np.ndarray:
        order = (np.random.default_rng([self.seed, epoch]).permutation(self.size) if self.shuffle
                 else np.arange(self.size))
        per_rank = self.batches_per_epoch * self.batch
        return order[self.rank::self.world][:per_rank]

    def iterate(self, skip: int = 0, epochs: int | None = None):
        """Yield model inputs batch by batch, starting after ``skip`` batches (continuing across epochs)."""
        import mindspore.dataset as ds
        epoch = skip // self.batches_per_epoch
        start = skip % self.batches_per_epoch
        while epochs is None or epoch < epochs:
            indices = self._order(epoch)[start * self.batch:]
            dataset = ds.MindDataset(self.files, columns_list=[COLUMN], sampler=ds.SubsetSampler(indices.tolist()))
            dataset = dataset.batch(self.batch, drop_remainder=True)
            for (ids,) in dataset.create_tuple_iterator(output_numpy=True, num_epochs=1):
                yield self.to_inputs(ids)
            epoch, start = epoch + 1, 0

    def to_inputs(self, ids: np.ndarray) -> tuple[np.ndarray, ...]:
        return batch_inputs(ids, self.eod, self.eod_reset)


def batch_inputs(ids: np.ndarray, eod: int, eod_reset: bool) -> tuple[np.ndarray, ...]:
    """``[b, s+1]`` windows -> (input_ids, labels, position_ids, attention_mask, loss_mask)."""
    inputs, labels = ids[:, :-1].astype(np.int32), ids[:, 1:].astype(np.int32)
    b, s = inputs.shape
    if eod_reset:
        positions, mask = eod_reset_masks(inputs, eod)
    else:
        positions = np.broadcast_to(np.arange(s, dtype=np.int32), (b, s)).copy()
        mask = np.broadcast_to(np.tril(np.ones((s, s), np.uint8)), (b, s, s)).copy()
    return inputs, labels, positions, mask.astype(np.float32), eod_loss_mask(inputs, eod)


# ---------------------------------------------------------------------------------------------------------
# The train step

class MaskedCrossEntropy(nn.Cell):
    """Sum of token cross entropies (positions whose input is not EOD) / tokens of the whole global batch."""

    def __init__(self, world: int):
        super().__init__()
        self.all_reduce = ops.AllReduce() if world > 1 else None

    def construct(self, logits, labels, loss_mask):
        logits = logits.reshape(-1, logits.shape[-1])                                      # [b*s, V]
        # cross entropy = logsumexp - the label's logit, written out: ops.cross_entropy also differentiates
        # through its max shift, which costs 4x the time on CPU (597 vs 150 ms forward + backward for
        # [512, 52224]); the shift does not change the value or the gradient, so it is a constant here.
        shifted = logits - ops.stop_gradient(logits.max(axis=-1, keepdims=True))
        label_logit = ops.gather_elements(shifted, 1, labels.reshape(-1, 1)).reshape(-1)
        ce = ops.log(ops.exp(shifted).sum(axis=-1)) - label_logit                          # [b*s]
        mask = loss_mask.reshape(-1)
        tokens = mask.sum()
        if self.all_reduce is not None:
            tokens = self.all_reduce(tokens)
        return (ce * mask).sum() / ops.stop_gradient(ops.maximum(tokens, 1.0))


class LanguageModelLoss(nn.Cell):
    """The model and its loss: a batch -> the mean token cross entropy (see MaskedCrossEntropy)."""

    def __init__(self, model: CodeGeeX, world: int):
        super().__init__(auto_prefix=False)
        self.model = model
        self.cross_entropy = MaskedCrossEntropy(world)
        if model.config.parallel.pipeline_stages > 1:
            self.cross_entropy.pipeline_stage = model.config.parallel.pipeline_stages - 1

    def construct(self, input_ids, labels, position_ids, attention_mask, loss_mask):
        logits = self.model(input_ids, position_ids, attention_mask)                       # [b, s, V]
        return self.cross_entropy(logits, labels, loss_mask)


# Per-gradient maths as MultitypeFuncGraphs applied with HyperMap (MindSpore's optimizer idiom): a Python loop or
# comprehension over the 13B model's 642 gradients unrolls into a call chain deeper than the compiler's limit.
_square_sum = ops.MultitypeFuncGraph("square_sum")
_scaled = ops.MultitypeFuncGraph("scaled")
_added = ops.MultitypeFuncGraph("added")
_read_and_zero = ops.MultitypeFuncGraph("read_and_zero")
_grad_and_zero = ops.MultitypeFuncGraph("grad_and_zero")


@_square_sum.register("Tensor")
def _square_sum_tensor(g):
    return ops.square(g.astype(ms.float32)).sum()


@_scaled.register("Tensor", "Tensor")
def _scaled_tensor(factor, g):
    return g * factor.astype(g.dtype)


@_added.register("Tensor", "Tensor")
def _added_tensor(a, b):
    return a + b


@_read_and_zero.register("Tensor", "Tensor")
def _read_and_zero_tensor(grad, accu):
    accu = ops.depend(accu, grad)                   # after this step's accumulation into it
    value = accu * 1.0
    return ops.depend(value, ops.assign(accu, ops.zeros_like(accu)))


@_grad_and_zero.register("Tensor", "Tensor")
def _grad_and_zero_tensor(grad, accu):
    value = grad * 1.0                              # the reduced gradient the pass hands over
    accu = ops.depend(accu, value)
    return ops.depend(value, ops.assign(accu, ops.zeros_like(accu)))


class PipelineStageLoss(LanguageModelLoss):
    """LanguageModelLoss compiled once as a reusable sub-graph (``lazy_inline``), as MindSpore's pipeline pass
    expects of the network inside ``PipelineCell`` (one call per micro-batch)."""

    @ms.lazy_inline
    def __init__(self, model: CodeGeeX, world: int):
        super().__init__(model, world)


class PipelineGradients(nn.Cell):
    """The gradients of a pipeline-parallel step. MindSpore's pipeline pass accumulates each micro-batch's
    gradients into parameters named ``accu_grads.*`` (one per trainable parameter); this reads them out once per
    step and zeroes them for the next. With optimizer sharding the pass hands over the reduced gradients
    directly, but it still needs the accumulators in the graph (it accumulates the sharded micro-batch
    gradients into them), so they are zeroed here too. (MindSpore 2.9's ``PipelineGradReducer`` does the same
    but, without optimizer sharding, refers to an undefined name and does not compile.)"""

    def __init__(self, parameters, opt_shard: bool):
        super().__init__(auto_prefix=False)
        self.accu_grads = parameters.clone(prefix="accu_grads", init="zeros")
        self.opt_shard = opt_shard
        self.hyper_map = ops.HyperMap()

    def construct(self, grads):
        if self.opt_shard:
            return self.hyper_map(_grad_and_zero, grads, self.accu_grads)
        return self.hyper_map(_read_and_zero, grads, self.accu_grads)


class TrainStep:
    """Compiled forward/backward/update; holds the optimizer and the dynamic loss scale."""

    def __init__(self, model: CodeGeeX, cfg: Config, world: int = 1, data_parallel_reduce: bool = True):
        # data_parallel_reduce: we sum gradients, tokens and losses over the ranks ourselves (data parallel);
        # False under semi_auto_parallel, where the graph is written for the global batch and the framework
        # inserts the reductions (doing them again would count every rank twice)
        explicit = world > 1 and data_parallel_reduce
        t = cfg.train
        params = model.trainable_params()
        decay = [p for p in params if not is_no_decay(p.name)]
        no_decay = [p for p in params if is_no_decay(p.name)]
        self.optimizer = nn.AdamWeightDecay(
            [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            learning_rate=WarmupCosineLR(t), beta1=t.beta1, beta2=t.beta2, eps=t.eps)
        self.loss_net = LanguageModelLoss(model, world if explicit else 1)
        # Pipeline stages (semi_auto_parallel): the batch is cut into micro-batches that flow through the stages;
        # the wrapped loss is the sum of the micro-batch losses and the gradients are accumulated by MindSpore
        # into the reducer's buffers, read out once per step.
        self.micro_batches = cfg.parallel.micro_batches if cfg.parallel.pipeline_stages > 1 else 1
        self.pipeline_reducer = None
        if cfg.parallel.pipeline_stages > 1:
            from mindspore.parallel.nn import PipelineCell
            self.loss_net = PipelineCell(PipelineStageLoss(model, world if explicit else 1), self.micro_batches)
            self.pipeline_reducer = PipelineGradients(self.optimizer.parameters, cfg.parallel.optimizer_shard)
        self.grad_clip = t.grad_clip
        self.scaler = (ms.amp.DynamicLossScaler(scale_value=t.loss_scale, scale_factor=t.loss_scale_factor,
                                                scale_window=t.loss_scale_window) if t.loss_scale > 0 else None)
        if self.scaler is not None:
            # state, not weights: a Parameter with requires_grad used in the forward graph is treated as a
            # weight by the pipeline pass (it looks for its gradient accumulator and fails)
            self.scaler.scale_value.requires_grad = False
            self.scaler.counter.requires_grad = False
        self.reducer = (nn.DistributedGradReducer(self.optimizer.parameters, mean=False, degree=world)
                        if explicit else None)
        self.explicit_reduce = explicit
        self.grad_fn = ms.value_and_grad(self._scaled_loss, None, self.optimizer.parameters)
        self.hyper_map = ops.HyperMap()
        self.step = ms.jit(self._step)
        self.grads = ms.jit(self._grads)
        self.accumulate = ms.jit(self._accumulate)
        self.apply = ms.jit(self._apply)
        self.evaluate = ms.jit(self._evaluate)

    def _scaled_loss(self, *batch):
        loss = self.loss_net(*batch)
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def _grads(self, *batch):
        scaled, grads = self.grad_fn(*batch)
        if self.reducer is not None:
            grads = self.reducer(grads)
        if self.pipeline_reducer is not None:
            grads = self.pipeline_reducer(grads)
            scaled = scaled / self.micro_batches
        loss = self.scaler.unscale(scaled) if self.scaler is not None else scaled
        if self.explicit_reduce:
            loss = ops.AllReduce()(loss)
        return loss, grads

    def _accumulate(self, total, grads):
        return self.hyper_map(_added, total, grads)

    def _apply(self, grads, micro_batches):
        """Average over micro-batches, unscale, skip on overflow, clip to the global norm, update.
        The three rescalings are one multiply: the gradients are read and written once, not three times."""
        unscale = 1.0 / micro_batches
        if self.scaler is not None:
            unscale = unscale / self.scaler.scale_value
        square_sum = ops.addn(self.hyper_map(_square_sum, grads))
        norm = ops.sqrt(square_sum) * unscale
        # The overflow check of the loss scale: an inf/nan in any gradient makes the norm inf/nan (and so does a
        # sum of squares that overflows while scaled), so this is ms.amp.all_finite without a second pass
        # over the gradients.
        finite = ops.isfinite(norm)
        if self.scaler is not None:
            self.scaler.adjust(finite)
        if finite:
            factor = unscale * self.grad_clip / ops.maximum(norm, self.grad_clip)     # global-norm clipping
            grads = self.hyper_map(ops.partial(_scaled, factor), grads)
            self.optimizer(grads)
        return finite, norm

    def _step(self, *batch):
        loss, grads = self._grads(*batch)
        finite, norm = self._apply(grads, float(self.micro_batches))
        return loss, finite, norm

    def _evaluate(self, *batch):
        loss = self.loss_net(*batch)
        if self.explicit_reduce:
            loss = ops.AllReduce()(loss)
        return loss

    @property
    def loss_scale(self) -> float:
        return float(self.scaler.scale_value.asnumpy()) if self.scaler is not None else 1.0

    def state_parameters(self) -> list[Parameter]:
        """Everything besides the weights that an exact resume needs: moments, step, loss-scale state."""
        params = list(self.optimizer.moments1) + list(self.optimizer.moments2) + [self.optimizer.global_step]
        if self.scaler is not None:
            params += [self.scaler.scale_value, self.scaler.counter]
        return params


# ---------------------------------------------------------------------------------------------------------
# Metrics and plots

def flops_per_token(cfg: Config) -> float:
    """Training FLOPs per token: 6 x (parameters used in matmuls) + attention scores (fwd + bwd)."""
    m = cfg.model
    matmul_params = count_parameters(m) - 2 * m.max_position_embeddings * m.hidden_size
    return 6 * matmul_params + 12 * (m.num_layers + 1) * m.hidden_size * cfg.train.seq_len


def measure_peak_flops() -> float:
    """FLOP/s of a 2048^3 fp32 matmul on this device (the 'peak' MFU is measured against when none is given)."""
    a = Tensor(np.random.default_rng(0).random((2048, 2048), dtype=np.float32))

    @ms.jit
    def matmul(x):
        return ops.matmul(x, x)

    matmul(a).asnumpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        matmul(a).asnumpy()
        best = min(best, time.perf_counter() - start)
    return 2 * 2048 ** 3 / best


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


def data_layout(cfg: Config, rank: int, world: int, data_parallel_reduce: bool) -> tuple[Config, int, int]:
    """Which batches this rank reads: (config, data rank, data ranks).

    Data parallel: rank r of N reads every N-th sample, ``micro_batch_size`` of them. Under semi_auto_parallel the
    ``data_parallel`` replicas split the samples the same way, and the ``model_parallel`` ranks of one replica
    (consecutive ranks: the device matrix is ``[data_parallel, model_parallel]``, per pipeline stage) read the
    same samples, as the dataset strategy of ``parallel.init_distributed`` tells MindSpore. (Feeding every rank
    the global batch instead would build the ``[global batch, s, s]`` attention mask on every host: 51 GB per
    step for the 13B layout.)"""
    if world == 1 or data_parallel_reduce:
        return cfg, rank, world
    p = cfg.parallel
    return cfg, (rank % (p.data_parallel * p.model_parallel)) // p.model_parallel, p.data_parallel


@dataclass
class RunResult:
    steps: int
    losses: list[float]
    stopped_by: str | None
    last_checkpoint: Path | None


def build_train_step(cfg: Config, layout: RankLayout) -> tuple[CodeGeeX, TrainStep]:
    """The model (in training mode) and its compiled train step for this rank: what ``train`` runs and what
    ``codegeex_ms.dryrun`` compiles for one rank of a cluster layout."""
    ms.set_seed(cfg.train.seed)
    model = CodeGeeX(cfg)
    model.set_train(True)
    return model, TrainStep(model, cfg, layout.world, layout.data_parallel_reduce)


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
            state, problem = load_run_checkpoint(folder, model, step_fn, rank if sharded else None, held), None
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
        raise ValueError(f"{run_dir} holds checkpoints of an earlier run; resume it or start in a new folder")
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in (run_dir / "checkpoints").glob("*.tmp") if (run_dir / "checkpoints").is_dir() else []:
            shutil.rmtree(stale)
    state = _resume(run_dir, model, step_fn, cfg, layout, log) if resume else dict(FRESH_STATE)
    metrics_path = run_dir / "metrics.jsonl"
    metrics = ([json.loads(line) for line in metrics_path.read_text().splitlines()]
               if metrics_path.exists() and resume else [])
    metrics = [m for m in metrics if m["step"] <= state["step"]]
    if rank == 0:
        atomic_write_text(metrics_path, "".join(json.dumps(m) + "\n" for m in metrics))
        cfg.save(run_dir / "config.yaml")

    peak = t.peak_flops or measure_peak_flops()
    tokens_per_step = data_cfg.train.micro_batch_size * t.grad_accumulation * t.seq_len * data_world
    flops_token = flops_per_token(cfg)
    stop = StopSignal()
    batches = train_batches.iterate(skip=state["micro_batches"])
    losses, last_checkpoint, saved_at = [], None, None

    def save():
        if sharded_checkpoints:
            path = save_sharded_run_checkpoint(run_dir, model, step_fn, state, t.keep_checkpoints, tokenizer, rank)
        else:
            path = (save_run_checkpoint(run_dir, model, step_fn, state, t.keep_checkpoints, tokenizer)
                    if rank == 0 else None)
        if rank == 0:
            plot_run(metrics, run_dir / "loss.png")
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
