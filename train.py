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


def check_data_fits_model(data: Path, cfg) -> None:
    """The data's tokenizer (from its manifest) against the model: every id must be a row of the embedding and
    EOD must be the model's, or step 1 fails inside the graph (a Gather index error) with a half-made run folder."""
    import json
    from codegeex_ms.config import ConfigError
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


def main(args) -> int:
    import json
    from codegeex_ms.config import ConfigError, apply_overrides, load_config, resolve_config
    from codegeex_ms.run_folder import RunFolder

    try:
        if args.resume:
            run_dir, run = args.resume, RunFolder(args.resume)
            if not run.config.is_file():
                raise ConfigError(f"--resume {run_dir}: no config.yaml there (not a run folder)")
            cfg = load_config(run.config)
            data = args.data or (Path(json.loads(run.record.read_text())["data"]) if run.record.is_file() else None)
        else:
            if not args.config or not args.data or not args.out:
                raise ConfigError("give --config, --data and --out (or --resume RUN_DIR)")
            cfg, run_dir, data = resolve_config(args.config), args.out, args.data
            run = RunFolder(run_dir)
            run.check_new(args.overwrite)
        cfg = apply_overrides(cfg, args.set) if args.set else cfg
        if data is None or not data.is_dir():
            raise ConfigError(f"--data {data}: no such folder")
        if not list(data.glob("train-*.mindrecord")):
            raise ConfigError(f"--data {data}: no train-*.mindrecord shards (run data_prep/prepare_corpus.py first)")
        check_data_fits_model(data, cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    import mindspore as ms
    from codegeex_ms.parallel import init_distributed
    from codegeex_ms.run_checkpoint import all_ranks_agree
    from codegeex_ms.training import train

    ms.set_context(mode=ms.PYNATIVE_MODE if args.pynative else ms.GRAPH_MODE)
    if args.device:
        ms.set_device(args.device)
    try:
        cfg.precision.check_device(ms.get_context("device_target"))
        layout = init_distributed(cfg, run_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tokenizer = args.tokenizer
    manifest = data / "manifest.json"
    if tokenizer is None and manifest.is_file():
        tokenizer = json.loads(manifest.read_text())["tokenizer"]["path"]
    rank, world = layout.rank, layout.world
    if args.overwrite and not args.resume:
        if rank == 0:
            run.remove()
        if world > 1:
            all_ranks_agree(True)       # a barrier: no rank writes into the folder before it is gone
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        run.record.write_text(json.dumps({"data": str(data.resolve()), "command": sys.argv}, indent=2))
    log = print if rank == 0 else (lambda *a, **k: None)
    try:
        result = train(cfg, data, run_dir, tokenizer=tokenizer, resume=bool(args.resume), layout=layout,
                       log=log)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if rank == 0:
        print(f"trained {result.steps} steps; last loss {result.losses[-1] if result.losses else float('nan'):.4f}; "
              f"checkpoint {result.last_checkpoint}; metrics {run_dir / 'metrics.jsonl'}, plot {run_dir / 'loss.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main, parse_args()))
