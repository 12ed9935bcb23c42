"""Train a CodeGeeX model with the original recipe on MindRecord shards from data_prep/prepare_corpus.py.

    python train.py --config model_configs/codegeex_tiny.yaml --data data/corpus --out runs/tiny
    python train.py --resume runs/tiny                               # continue exactly where it stopped
    python train.py --config codegeex_125m --data DATA --out RUN --set train.lr=3e-4 --set train.max_steps=500
    msrun --worker_num=2 --local_worker_num=2 --master_port=8118 --join=True --log_dir=RUN/msrun \\
        train.py --config codegeex_tiny --data DATA --out RUN --set parallel.data_parallel=2

Every value of the config (model, precision, parallel, train sections) can be overridden with --set
section.key=value. The run folder holds config.yaml, metrics.jsonl, loss.png and checkpoints/step-N/
(weights + config + optimizer state + data position); SIGINT/SIGTERM save a checkpoint before exiting.
Under semi_auto_parallel (Ascend, model_parallel > 1) every rank saves its own slices into step-N/rank_R/ with the
strategy file; `python -m codegeex_ms.reshard merge RUN/checkpoints/step-N OUT` makes one single-device folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codegeex_ms.cli import ArgumentParser, run
from codegeex_ms.training.command import main  # imports no MindSpore until a run starts


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--config", help="model config YAML or shipped name (codegeex_tiny, codegeex_125m, ...); "
                                    "with --resume, the run's own config is used")
    p.add_argument("--data", type=Path, help="folder of train-*/validation-*.mindrecord shards")
    p.add_argument("--out", type=Path, help="run folder (created); checkpoints, metrics.jsonl and loss.png go here")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last complete checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="--out names an earlier run: delete it and start again (without this flag an existing run "
                        "folder is refused, so that no run is lost by a repeated command)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. train.lr=3e-4 or model.hidden_dropout=0.0 (repeatable)")
    p.add_argument("--tokenizer", help="tokenizer folder to record in the checkpoints (default: the data's)")
    p.add_argument("--device", choices=("CPU", "GPU", "Ascend"), help="MindSpore device (default: MindSpore's choice)")
    p.add_argument("--pynative", action="store_true", help="run eagerly (PyNative, train step still jit) to debug")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(run(main, parse_args()))
