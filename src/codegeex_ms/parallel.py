"""Process-group setup and the parallel context, from the config's ``parallel`` section.

Launch modes:
  single process     python train.py ...
  data parallel      msrun --worker_num=N --local_worker_num=N --master_port=8118 --join=True train.py ...
                     (CPU, GPU and Ascend; gradients summed over ranks by DistributedGradReducer)
  Ascend model/optimizer parallel   the same msrun launch on Ascend with model_parallel > 1 or optimizer_shard:
                     semi_auto_parallel with the Cells' shard strategies; every rank checkpoints its own
                     slices (merge them with `python -m codegeex_ms.reshard merge`). This path cannot be compiled
                     without Ascend hardware (MindSpore refuses semi_auto_parallel on CPU) and has not been
                     run by this project's CI.
"""
from __future__ import annotations

import os

from .config import Config, ConfigError


def launched_by_msrun() -> bool:
    return "MS_WORKER_NUM" in os.environ or os.environ.get("MS_ROLE") == "MS_WORKER"


def apply_compiler_options(p, device: str) -> None:
    """Graph-kernel fusion (Ascend/GPU) and AOE operator tuning (Ascend) from the parallel config; on other
    devices the switches are inert, like the shard strategies."""
    import mindspore as ms
    if p.graph_kernel and device in ("Ascend", "GPU"):
        ms.set_context(enable_graph_kernel=True, graph_kernel_flags=p.graph_kernel_flags)
    if p.aoe_tune_mode and device == "Ascend":
        from mindspore.device_context.ascend.op_tuning import aoe_tune_mode
        aoe_tune_mode(p.aoe_tune_mode)


def strategy_path(run_dir, rank: int):
    """Where MindSpore writes this rank's strategy file (the layout of every parameter and optimizer moment)."""
    from pathlib import Path
    return Path(run_dir) / "strategy" / f"rank_{rank}.ckpt"


def init_distributed(cfg: Config, run_dir=None) -> tuple[int, int]:
    """Initialise communication when launched by msrun and set the parallel context; returns (rank, world).
    Under semi_auto_parallel, MindSpore saves the strategy file to ``strategy_path(run_dir, rank)``: sharded
    checkpoints carry it, and ``python -m codegeex_ms.reshard merge`` needs it."""
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    if launched_by_msrun():
        init()
        rank, world = get_rank(), get_group_size()
    else:
        rank, world = 0, 1
    p = cfg.parallel
    cfg.parallel.check(cfg.model, device_num=world)
    device = ms.get_context("device_target")
    apply_compiler_options(p, device)
    if p.pipeline_stages > 1:
        raise ConfigError(f"parallel.pipeline_stages = {p.pipeline_stages}: pipeline-parallel training is not "
                          f"implemented yet; use model_parallel and data_parallel")
    needs_semi_auto = p.model_parallel > 1 or p.optimizer_shard or not p.vocab_emb_dp
    if world > 1 and needs_semi_auto:
        if device != "Ascend":
            raise ConfigError(f"parallel.model_parallel = {p.model_parallel}, optimizer_shard = {p.optimizer_shard}, "
                              f"vocab_emb_dp = {p.vocab_emb_dp} need semi_auto_parallel, which MindSpore only "
                              f"compiles on Ascend; on {device} use data parallel only (model_parallel 1, "
                              f"optimizer_shard false, vocab_emb_dp true)")
        # full_batch: every rank feeds the global batch and is given its slice (training.data_layout)
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.SEMI_AUTO_PARALLEL, device_num=world,
                                     gradients_mean=False, full_batch=True,
                                     enable_parallel_optimizer=p.optimizer_shard)
        if p.optimizer_shard and p.optimizer_shard_size:
            ms.set_auto_parallel_context(parallel_optimizer_config={"optimizer_weight_shard_size": p.optimizer_shard_size})
        if run_dir is not None:
            ms.set_auto_parallel_context(strategy_ckpt_config={"save_file": str(strategy_path(run_dir, rank)),
                                                               "only_trainable_params": False})
    elif world > 1:
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, device_num=world,
                                     gradients_mean=False)
    return rank, world
