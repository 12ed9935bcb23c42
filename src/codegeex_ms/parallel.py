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
from dataclasses import dataclass

from .config import Config, ConfigError


@dataclass(frozen=True)
class RankLayout:
    """Where this process sits in the job and what that implies, as ``init_distributed`` set it up.

    ``data_parallel_reduce``: we sum gradients, tokens and losses over the ranks ourselves (data parallel; under
    semi_auto_parallel the framework inserts the reductions, and doing them again would count every rank twice).
    ``sharded_checkpoints``: every rank holds slices, so every rank saves (and resumes from) its own file."""
    rank: int = 0
    world: int = 1
    data_parallel_reduce: bool = True
    sharded_checkpoints: bool = False


def needs_semi_auto(cfg: Config) -> bool:
    """Whether the layout splits tensors over devices (model parallel, optimizer sharding, a vocabulary-parallel
    embedding or pipeline stages), which MindSpore's semi_auto_parallel mode does."""
    p = cfg.parallel
    return p.model_parallel > 1 or p.optimizer_shard or not p.vocab_emb_dp or p.pipeline_stages > 1


def launched_by_msrun() -> bool:
    return "MS_WORKER_NUM" in os.environ or os.environ.get("MS_ROLE") == "MS_WORKER"


def simulated() -> bool:
    """MindSpore's DryRun: one process compiles the graph of rank RANK_ID of a RANK_SIZE-device job
    (``codegeex_ms.dryrun``); ``init()`` sets up dummy collectives."""
    return "MS_SIMULATION_LEVEL" in os.environ and "RANK_SIZE" in os.environ


def apply_compiler_options(p, device: str) -> None:
    """Graph-kernel fusion (Ascend/GPU) and AOE operator tuning (Ascend) from the config's ``compile`` section;
    on other devices the switches are inert, like the shard strategies."""
    import mindspore as ms
    if p.graph_kernel and device in ("Ascend", "GPU"):
        ms.set_context(enable_graph_kernel=True, graph_kernel_flags=p.graph_kernel_flags)
    if p.aoe_tune_mode and device == "Ascend":
        from mindspore.device_context.ascend.op_tuning import aoe_tune_mode
        aoe_tune_mode(p.aoe_tune_mode)


def stage_parameter_names(cfg: Config, strategy) -> set[str] | None:
    """Under pipeline stages a rank holds only its stage's parameters (and their optimizer state): the names its
    strategy file describes. None (every parameter) without pipeline stages."""
    from pathlib import Path
    if cfg.parallel.pipeline_stages == 1:
        return None
    import mindspore as ms
    if strategy is None or not Path(strategy).is_file():
        raise ConfigError(f"pipeline stages: no strategy file at {strategy}, so which parameters this rank holds "
                          f"is unknown")
    return set(ms.parallel.build_searched_strategy(str(strategy)))


def strategy_path(run_dir, rank: int):
    """Where MindSpore writes this rank's strategy file (``RunFolder.strategy_file``)."""
    from .run_folder import RunFolder
    return RunFolder(run_dir).strategy_file(rank)


def check_layout(cfg: Config, world: int) -> None:
    """The layout arithmetic against the model, the device count and the batch (named errors, before compiling)."""
    p = cfg.parallel
    p.check(cfg.model, device_num=world)
    if p.pipeline_stages > 1:
        if p.micro_batches < p.pipeline_stages:
            raise ConfigError(f"parallel.micro_batches ({p.micro_batches}) must be >= parallel.pipeline_stages "
                              f"({p.pipeline_stages}): every stage needs a micro-batch in flight")
        if cfg.train.micro_batch_size % p.micro_batches:
            raise ConfigError(f"train.micro_batch_size ({cfg.train.micro_batch_size}) is not divisible by "
                              f"parallel.micro_batches ({p.micro_batches}): the pipeline cuts each rank's batch "
                              f"into micro-batches")


def init_distributed(cfg: Config, run_dir=None) -> RankLayout:
    """Initialise communication when launched by msrun and set the parallel context.
    Under semi_auto_parallel, MindSpore saves the strategy file to ``strategy_path(run_dir, rank)``: sharded
    checkpoints carry it, and ``python -m codegeex_ms.reshard merge`` needs it."""
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    if launched_by_msrun() or simulated():
        init()
        rank, world = get_rank(), get_group_size()
    else:
        rank, world = 0, 1
    p = cfg.parallel
    check_layout(cfg, world)
    device = ms.get_context("device_target")
    apply_compiler_options(cfg.compile, device)
    if world > 1 and needs_semi_auto(cfg):
        if device != "Ascend":
            raise ConfigError(f"parallel.model_parallel = {p.model_parallel}, pipeline_stages = {p.pipeline_stages}, "
                              f"optimizer_shard = {p.optimizer_shard}, vocab_emb_dp = {p.vocab_emb_dp} need "
                              f"semi_auto_parallel, which MindSpore only compiles on Ascend (python -m "
                              f"codegeex_ms.dryrun compiles it here); on {device} use data parallel only "
                              f"(model_parallel 1, pipeline_stages 1, optimizer_shard false, vocab_emb_dp true)")
        # every replica feeds its own samples, the model-parallel ranks of a replica the same ones
        # (data.batches.data_layout): the five train-step inputs are split over data_parallel along the batch
        dp = p.data_parallel
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.SEMI_AUTO_PARALLEL, device_num=world,
                                     gradients_mean=False, full_batch=False,
                                     dataset_strategy=((dp, 1), (dp, 1), (dp, 1), (dp, 1, 1), (dp, 1)),
                                     enable_parallel_optimizer=p.optimizer_shard)
        if p.pipeline_stages > 1:
            ms.set_auto_parallel_context(pipeline_stages=p.pipeline_stages)
        if p.optimizer_shard and p.optimizer_shard_size:
            ms.set_auto_parallel_context(
                parallel_optimizer_config={"optimizer_weight_shard_size": p.optimizer_shard_size})
        if run_dir is not None:
            ms.set_auto_parallel_context(strategy_ckpt_config={"save_file": str(strategy_path(run_dir, rank)),
                                                               "only_trainable_params": False})
        return RankLayout(rank, world, data_parallel_reduce=False, sharded_checkpoints=True)
    if world > 1:
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, device_num=world,
                                     gradients_mean=False)
        return RankLayout(rank, world)
    return RankLayout(rank, world)
