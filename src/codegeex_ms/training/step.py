"""The compiled train step: learning-rate schedule, the loss, the functional step (value_and_grad -> all-reduce ->
unscale -> finite check -> clip -> AdamWeightDecay), pipeline gradients, and the model + step builder."""
from __future__ import annotations

import math
import time

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.nn.learning_rate_schedule import LearningRateSchedule

from ..config import Config, TrainConfig
from ..layout import count_parameters, is_no_decay
from ..model import CodeGeeX
from ..parallel import RankLayout


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

class MaskedCrossEntropy(nn.Cell):
    """Sum of token cross entropies (positions whose input is not EOD) / tokens of the whole global batch."""

    def __init__(self, world: int):
        super().__init__()
        self.all_reduce = ops.AllReduce() if world > 1 else None

    def construct(self, logits, labels, loss_mask):
        logits = logits.reshape(-1, logits.shape[-1])                                      # [b*s, V]
        # cross entropy = logsumexp - the label's logit, written out: ops.cross_entropy also differentiates
        # through its max shift, several times slower on CPU (bench/README.md, "Measurements behind design
        # choices"); the shift does not change the value or the gradient, so it is a constant here.
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

def build_train_step(cfg: Config, layout: RankLayout) -> tuple[CodeGeeX, TrainStep]:
    """The model (in training mode) and its compiled train step for this rank: what ``train`` runs and what
    ``codegeex_ms.dryrun`` compiles for one rank of a cluster layout."""
    ms.set_seed(cfg.train.seed)
    model = CodeGeeX(cfg)
    model.set_train(True)
    return model, TrainStep(model, cfg, layout.world, layout.data_parallel_reduce)

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
