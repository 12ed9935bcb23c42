"""``train.py``'s command: start or resume a run folder, check the data against the model (before MindSpore is
imported, so that a bad flag fails in a second and leaves no half-made folder), then train on every rank."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..config import Config, ConfigError, apply_overrides, load_config, resolve_config
from ..run_folder import RunFolder


def check_data_fits_model(data: Path, cfg: Config) -> None:
    """The data's tokenizer (from its manifest) against the model: every id must be a row of the embedding and
    EOD must be the model's, or step 1 fails inside the graph (a Gather index error) with a half-made run folder."""
    manifest = data / "manifest.json"
    if not manifest.is_file():
        return
    tok = json.loads(manifest.read_text()).get("tokenizer", {})
    vocab, eos = tok.get("vocab_size"), tok.get("eos_id")
    m = cfg.model
    if vocab is not None and vocab > m.padded_vocab_size:
        raise ConfigError(f"--data {data}: tokenized with {tok.get('path')} ({vocab} tokens), more than the model's "
                          f"model.padded_vocab_size ({m.padded_vocab_size}); use a config with a vocabulary that size "
                          f"or re-tokenize the data")
    if eos is not None and eos != m.eod_token_id:
        raise ConfigError(f"--data {data}: its tokenizer's EOD id is {eos}, the model's model.eod_token_id is "
                          f"{m.eod_token_id}")


def open_run(args) -> tuple[Config, RunFolder, Path]:
    """The config, run folder and data of ``--resume RUN`` (its own config and recorded data) or of a new run
    (``--config``, ``--data``, ``--out``; an earlier run there is refused unless ``--overwrite``), ``--set``
    applied; ConfigError naming the flag when one is missing or does not fit."""
    if args.resume:
        run = RunFolder(args.resume)
        if not run.config.is_file():
            raise ConfigError(f"--resume {args.resume}: no config.yaml there (not a run folder)")
        cfg, data = load_config(run.config), args.data or run.recorded_data()
    else:
        if not args.config or not args.data or not args.out:
            raise ConfigError("give --config, --data and --out (or --resume RUN_DIR)")
        cfg, run, data = resolve_config(args.config), RunFolder(args.out), args.data
        run.check_new(args.overwrite)
    cfg = apply_overrides(cfg, args.set) if args.set else cfg
    if data is None or not data.is_dir():
        raise ConfigError(f"--data {data}: no such folder")
    if not list(data.glob("train-*.mindrecord")):
        raise ConfigError(f"--data {data}: no train-*.mindrecord shards (run data_prep/prepare_corpus.py first)")
    check_data_fits_model(data, cfg)
    return cfg, run, data


def main(args) -> int:
    """Train as ``args`` (train.py's flags) say; rank 0 prints the log and the summary."""
    cfg, run, data = open_run(args)
    import mindspore as ms
    from ..parallel import init_distributed
    from ..run_checkpoint import all_ranks_agree
    from .loop import train

    ms.set_context(mode=ms.PYNATIVE_MODE if args.pynative else ms.GRAPH_MODE)
    if args.device:
        ms.set_device(args.device)
    cfg.precision.check_device(ms.get_context("device_target"))
    layout = init_distributed(cfg, run.path)
    tokenizer = args.tokenizer
    manifest = data / "manifest.json"
    if tokenizer is None and manifest.is_file():
        tokenizer = json.loads(manifest.read_text())["tokenizer"]["path"]
    if args.overwrite and not args.resume:
        if layout.rank == 0:
            run.remove()
        if layout.world > 1:
            all_ranks_agree(True)       # a barrier: no rank writes into the folder before it is gone
    if layout.rank == 0:
        run.write_record(data, sys.argv)
    log = print if layout.rank == 0 else (lambda *a, **k: None)
    result = train(cfg, data, run.path, tokenizer=tokenizer, resume=bool(args.resume), layout=layout, log=log)
    if layout.rank == 0:
        print(f"trained {result.steps} steps; last loss {result.losses[-1] if result.losses else float('nan'):.4f}; "
              f"checkpoint {result.last_checkpoint}; metrics {run.metrics}, plot {run.plot}")
    return 0
