"""Training: the CodeGeeX recipe as one compiled train step, exact resume, metrics and plots.

The step is functional (value_and_grad -> all-reduce -> unscale -> finite check -> clip -> AdamWeightDecay)
so it runs on CPU as well as Ascend: MindSpore's loss-scale wrapper cells need an NPU-only op. The loss is
the mean cross entropy over positions whose *input* is not EOD, normalised by the token count of the whole
global batch, so N data-parallel ranks compute exactly the single-process loss and gradients.
"""
from ..data.batches import TokenBatches, batch_inputs, data_layout
from .loop import RunResult, train
from .step import (LanguageModelLoss, TrainStep, WarmupCosineLR, build_train_step, flops_per_token, lr_at,
                   measure_peak_flops)

__all__ = ["LanguageModelLoss", "RunResult", "TokenBatches", "TrainStep", "WarmupCosineLR", "batch_inputs",
           "build_train_step", "data_layout", "flops_per_token", "lr_at", "measure_peak_flops", "train"]
