"""Training batches from MindRecord shards: which samples a rank reads, and the inputs, labels and masks of a batch."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import Config, ConfigError
from .pack import COLUMN, shard_files
from ..masks import eod_reset_masks, loss_mask as eod_loss_mask


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
            raise ConfigError(f"{data_dir}: {split} samples hold {width} ids, but train.seq_len + 1 = "
                              f"{self.seq_len + 1}; prepare the data with --seq-len {self.seq_len}")
        self.batches_per_epoch = self.size // world // self.batch
        if self.batches_per_epoch == 0:
            raise ConfigError(f"{data_dir}: the {split} split has {self.size} samples, fewer than one global batch "
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
