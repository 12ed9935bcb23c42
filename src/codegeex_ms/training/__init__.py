"""Training: the CodeGeeX recipe as one compiled train step, exact resume, metrics and plots.

The step is functional (value_and_grad -> all-reduce -> unscale -> finite check -> clip -> AdamWeightDecay)
so it runs on CPU as well as Ascend: MindSpore's loss-scale wrapper cells need an NPU-only op. The loss is
the mean cross entropy over positions whose *input* is not EOD, normalised by the token count of the whole
global batch, so N data-parallel ranks compute exactly the single-process loss and gradients.
"""
import importlib

# name -> the module that defines it, imported on first use: ``training.command`` checks a run's flags before
# MindSpore (which the step and the loop import) is loaded
_WHERE = {"TokenBatches": "..data.batches", "batch_inputs": "..data.batches", "data_layout": "..data.batches",
          "RunResult": ".loop", "train": ".loop", "LanguageModelLoss": ".step", "TrainStep": ".step",
          "WarmupCosineLR": ".step", "build_train_step": ".step", "flops_per_token": ".step", "lr_at": ".step",
          "measure_peak_flops": ".step"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)
