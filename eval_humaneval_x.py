"""HumanEval-X: generate samples with a checkpoint, run them in a sandbox, and report pass@k.

    python eval_humaneval_x.py doctor                                   # which toolchains are ready, how to fix
    python eval_humaneval_x.py evaluate --data-dir ../shared/datasets/humaneval-x --canonical --out canon.jsonl
    python eval_humaneval_x.py generate --checkpoint CKPT --data-dir DATA --n 20 --out samples.jsonl
    python eval_humaneval_x.py generate ... --shard 0/4 --out s0.jsonl     # one of 4 shards (a device, a host)
    python eval_humaneval_x.py merge --out samples.jsonl s0.jsonl s1.jsonl s2.jsonl s3.jsonl
    python eval_humaneval_x.py generate ... --engine slurm --partition gpu --tasks 8 --gpus-per-task 1 --out s.jsonl
    python eval_humaneval_x.py generate --checkpoint CKPT --data-dir DATA --task translation --src-lang python \\
        --languages cpp,java --out trans.jsonl
    python eval_humaneval_x.py evaluate --data-dir DATA --samples samples.jsonl --out results.jsonl
    python eval_humaneval_x.py evaluate ... --engine ray --tasks 16 --out results.jsonl      # over a Ray cluster
    python eval_humaneval_x.py evaluate ... --engine slurm --partition cpu --tasks 64 --wait --out results.jsonl
    python eval_humaneval_x.py report --results results.jsonl --out report/humaneval_x
    python eval_humaneval_x.py paper --checkpoint CKPT --out paper/ [--scale 0.05]   # the paper's tables, resumable
    python eval_humaneval_x.py fetch-data --data-dir DATA                # download + verify sha256 (needs internet)

Samples are JSON lines in the original's format ({task_id, prompt, generation}; translation samples add
task="translation" and src_lang). generate and evaluate append as they go: rerun the same command after an
interruption and they continue where they stopped. Programs run in a sandbox (own process group, resource limits,
and, as root, no network, a private /tmp and an unprivileged uid); see `codegeex_ms.humaneval.sandbox`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from codegeex_ms.cli import (ArgumentParser, UsageError, non_negative_float, non_negative_int, positive_float,
                             positive_int)

from codegeex_ms.humaneval import engine_args
from codegeex_ms.humaneval.dataset import LANGUAGES, parse_languages

DEFAULT_DATA = Path(__file__).resolve().parent.parent / "shared" / "datasets" / "humaneval-x"


def add_common(p, languages=True):
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                   help=f"folder with humaneval_<lang>.jsonl.gz (default: {DEFAULT_DATA})")
    if languages:
        p.add_argument("--languages", default="all",
                       help=f"comma-separated subset of {','.join(LANGUAGES)} (default: all)")


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True)

    add_generate_parser(sub)

    m = sub.add_parser("merge", help="join the samples (or results) files of generate (evaluate) --shard I/N",
                       description="Join the samples files of generate --shard 0/N .. N-1/N into one, checking that "
                                   "every sample of the run appears exactly once and that all shards share their "
                                   "settings; or the results files of evaluate --shard 0/N .. N-1/N, checking that "
                                   "they evaluated the same samples with the same options and toolchains and that "
                                   "every sample has exactly one result (rows in sample order).")
    m.add_argument("parts", type=Path, nargs="+",
                   help="the shards' samples files (each with its .settings.json) or results files (each with its "
                        ".meta.json)")
    m.add_argument("--out", type=Path, required=True, help="the merged file (must not exist)")

    add_evaluate_parser(sub)

    r = sub.add_parser("report", help="pass@k tables (Markdown, CSV, JSON) and a PNG chart from results",
                       description="Pass@k tables (Markdown, CSV, JSON) and a PNG chart from results.")
    r.add_argument("--results", type=Path, required=True, action="append", help="results JSONL (repeatable)")
    r.add_argument("--out", type=Path, required=True, help="output prefix: writes PREFIX.md/.csv/.json/.png")

    pp = sub.add_parser("paper", help="the paper's settings end to end: canonical run, generation at n=20/t=0.2 and "
                                      "n=200/t=0.8, every translation pair, evaluation, the report",
                        description=PAPER_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(pp)
    pp.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (config + weights + tokenizer)")
    pp.add_argument("--out", type=Path, required=True,
                    help="folder for every samples and results file, paper.json and report/ (resumes)")
    pp.add_argument("--scale", type=positive_float, default=1.0,
                    help="shrink the problems per language and both n by this factor, at least 1 each, for a smoke "
                         "run (default 1: 164 problems, n=20 and n=200)")
    pp.add_argument("--batch-size", type=positive_int, default=8, help="generate's --batch-size (default 8)")
    pp.add_argument("--max-new-tokens", type=positive_int, default=1024,
                    help="tokens per sample at most (default 1024, the original's --out-seq-length)")
    pp.add_argument("--seed", type=non_negative_int, default=0, help="base seed of every generate step (default 0)")
    pp.add_argument("--workers", type=positive_int, help="evaluate's programs at once (default: all cores)")
    pp.add_argument("--run-timeout", type=positive_float, default=5.0,
                    help="the floor of each language's run timeout (default 5, upstream's)")
    pp.add_argument("--timeout-factor", type=positive_float, default=4.0,
                    help="run timeout = max(--run-timeout, this x the language's slowest canonical run) (default 4)")
    pp.add_argument("--print-commands", action="store_true",
                    help="print the plan's commands (to spread them over machines yourself) and exit")

    sub.add_parser("doctor", help="check the six toolchains and print install commands for what is missing",
                   description="Check the six toolchains and print install commands for what is missing.")

    f = sub.add_parser("fetch-data", help="download the data from the CodeGeeX repository, verifying sha256",
                       description="Download the data from the CodeGeeX repository, verifying sha256.")
    add_common(f)
    return p.parse_args(argv)


def add_generate_parser(sub) -> None:
    g = sub.add_parser("generate", help="sample completions (or translations) with a checkpoint",
                       description="Sample completions (or translations) with a checkpoint.")
    add_common(g)
    g.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (config + weights + tokenizer)")
    g.add_argument("--out", type=Path, required=True, help="samples JSONL (appended to; resumes)")
    g.add_argument("--task", choices=("generation", "translation"), default="generation",
                   help="generation: tag + problem prompt; translation: the original's template from --src-lang")
    g.add_argument("--src-lang", choices=LANGUAGES, help="translation: source language (its canonical solutions)")
    g.add_argument("--n", type=positive_int, default=1, help="samples per problem (default 1)")
    g.add_argument("--batch-size", type=positive_int, default=1,
                   help="rows decoded together, each refilled with the next due sample when it finishes (default 1); "
                        "the samples are the same for any batch size")
    g.add_argument("--greedy", action="store_true", help="argmax decoding (then --n 1 is enough)")
    g.add_argument("--temperature", type=positive_float, default=0.8, help="default 0.8 (the original's scripts)")
    g.add_argument("--top-p", type=non_negative_float, default=0.95,
                   help="nucleus sampling: sample from the smallest set of tokens whose probability reaches P "
                        "(default 0.95; 0 or 1: off)")
    g.add_argument("--top-k", type=non_negative_int, default=0,
                   help="sample from the K most likely tokens only (default 0: off)")
    g.add_argument("--max-new-tokens", type=positive_int, default=512,
                   help="tokens generated per sample at most (default 512)")
    g.add_argument("--seed", type=non_negative_int, default=0, help="base seed; each problem's seed derives from it")
    g.add_argument("--limit", type=positive_int, help="only the first N problems of each language")
    g.add_argument("--device", choices=("CPU", "GPU", "Ascend"),
                   help="MindSpore's device target (default: what this MindSpore build runs on)")
    g.add_argument("--device-id", type=non_negative_int, help="which device of --device (default 0)")
    g.add_argument("--shard", type=shard_spec, default=(0, 1), metavar="I/N",
                   help="generate only shard I of N (0-based): a contiguous block of the run's samples in (language, "
                        "problem, sample) order; each shard writes its own --out, and merge joins them into what one "
                        "unsharded run writes, byte for byte (default 0/1: everything). msrun: started by msrun "
                        "--worker_num=N, rank R takes shard R/N on its device (DEVICE_ID) and writes "
                        "OUT.work/shards/R.jsonl; merge them afterwards")

    engine_args.add_engine_arguments(g, "generate")


def add_evaluate_parser(sub) -> None:
    e = sub.add_parser("evaluate", help="run samples against the hidden tests",
                       description="Run samples against the hidden tests.")
    add_common(e)
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--samples", type=Path, help="samples JSONL(.gz) from generate or any other model")
    src.add_argument("--canonical", action="store_true", help="self-test: every canonical solution (must pass)")
    src.add_argument("--negative-control", action="store_true",
                     help="self-test: a body that throws, for every problem (must fail)")
    e.add_argument("--limit", type=positive_int, help="--canonical / --negative-control: the first N problems of "
                                                       "each language only")
    e.add_argument("--out", type=Path, required=True, help="results JSONL (appended to; resumes)")
    e.add_argument("--workers", type=positive_int,
                   help="programs run at once (default: all cores; with --engine slurm or ray: per shard, default 1, "
                        "the CPUs each shard asks for)")
    e.add_argument("--compile-timeout", type=positive_float, default=60.0, help="seconds per compilation (default 60)")
    e.add_argument("--run-timeout", type=positive_float, default=15.0, help="seconds per test run (default 15)")
    e.add_argument("--timeouts-from", type=Path, metavar="CANONICAL_RESULTS",
                   help="per-language run timeouts: max(--run-timeout, --timeout-factor x the slowest canonical "
                        "solution's run in these results of evaluate --canonical, taken on the machines that run "
                        "the samples); --run-timeout becomes the floor (upstream's was 5). Recorded with the results")
    e.add_argument("--timeout-factor", type=positive_float, default=4.0,
                   help="with --timeouts-from: times the slowest canonical run (default 4, as evalplus)")
    e.add_argument("--upstream", action="store_true",
                   help="strict upstream program assembly and verdicts (no Go import / Rust rand fixes)")
    e.add_argument("--no-isolation", action="store_true",
                   help="run without namespaces and uid drop even as root (only for debugging the harness)")
    e.add_argument("--work-dir", default="/var/tmp", help="where job directories go; not /tmp (default /var/tmp)")
    e.add_argument("--shard", type=shard_spec, default=(0, 1), metavar="I/N",
                   help="evaluate only shard I of N (0-based): the contiguous block of sample indices "
                        "[I*T//N, (I+1)*T//N) of the T samples, into its own --out; merge joins the shards' results "
                        "(default 0/1: everything)")
    engine_args.add_engine_arguments(e, "evaluate")


PAPER_HELP = """\
Run the paper's HumanEval-X settings end to end, each step an eval_humaneval_x.py command (printed as it starts):

  1. evaluate --canonical: each language's run timeout = max(--run-timeout, --timeout-factor x its slowest
     canonical run on this machine)
  2. generate + evaluate: n=20, temperature 0.2, top-p 0.95 (pass@1)
  3. generate + evaluate: n=200, temperature 0.8, top-p 0.95 (pass@10, pass@100)
  4. per source language: generate --task translation into every other language + evaluate (n=200, t=0.8,
     top-p 0.95: every ordered pair, 20 for the paper's 5 languages, 30 with Rust)
  5. the report: ours beside the published figures, with standard errors (OUT/report/paper.md, .csv, .json, .png)

It prints the work (samples, tokens, executions) first. A finished step is recorded in OUT/steps/ and skipped when
the same command runs again; an interrupted one continues where it stopped. The paper's 5 languages:
--languages python,cpp,java,js,go (the default, all, adds Rust)."""


def shard_spec(text: str) -> tuple[int, int] | str:
    if text == "msrun":
        return text
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N (e.g. 0/4) or msrun, got {text!r}")
    return int(index), int(count)


def cmd_merge(args) -> int:
    from codegeex_ms.humaneval.execution import JoinError, join_result_files, results_meta_path
    from codegeex_ms.humaneval.sampling import MergeError, merge_sample_files
    if args.out.exists():
        raise UsageError(f"--out {args.out} exists; choose a new file")
    results = all(results_meta_path(path).is_file() for path in args.parts)
    try:
        count = (join_result_files if results else merge_sample_files)(args.parts, args.out)
    except (JoinError, MergeError) as e:
        raise UsageError(str(e)) from None
    kind = "result shards" if results else "shards"
    print(f"merged {len(args.parts)} {kind}: {count} {'results' if results else 'samples'} -> {args.out}")
    return 0


def cmd_generate(args) -> int:
    import mindspore as ms
    from tqdm import tqdm
    from codegeex_ms import checkpoint
    from codegeex_ms.generation import cache_length
    from codegeex_ms.humaneval.dataset import load_problems
    from codegeex_ms.humaneval.execution import completed_rows
    from codegeex_ms.humaneval.sampling import (SampleSettings, check_samples_settings, plan_units, prompt_for,
                                                write_samples)
    from codegeex_ms.loading import load_for_inference

    if args.engine != "local":
        return generate_on_cluster(args)
    if args.tasks or args.wait:
        raise UsageError("--tasks and --wait are for --engine slurm or ray")
    if args.device_id is not None and not args.device:
        raise UsageError("--device-id needs --device")
    if args.shard == "msrun":
        take_msrun_rank(args)
    langs = parse_languages(args.languages)
    if args.task == "translation":
        if not args.src_lang:
            raise UsageError("--task translation needs --src-lang")
        langs = tuple(lang for lang in langs if lang != args.src_lang)
    if args.n < 1 or args.batch_size < 1:
        raise UsageError("--n and --batch-size must be >= 1")
    checkpoint.check_folder(args.checkpoint)        # a missing folder or a run folder, before reading any data
    problems = {lang: load_problems(args.data_dir, lang) for lang in set(langs) | {args.src_lang or langs[0]}}
    done: dict[str, int] = {}
    for row in completed_rows(args.out):          # also drops a torn last line before appending
        done[row["task_id"]] = done.get(row["task_id"], 0) + 1
    ms.set_context(mode=ms.GRAPH_MODE)
    if args.device:
        ms.set_device(args.device, args.device_id)
    loaded = load_for_inference(args.checkpoint)
    tokenizer, context = loaded.tokenizer, loaded.context
    if args.max_new_tokens >= context:
        raise UsageError(f"--max-new-tokens {args.max_new_tokens} must be below the context ({context})")
    tasks = {lang: list(problems[lang])[:args.limit] for lang in langs}
    settings = SampleSettings(args.task, args.max_new_tokens, args.greedy, args.temperature, args.top_k, args.top_p,
                              args.seed, args.src_lang)
    check_samples_settings(args.out, args.checkpoint, settings, args.shard, args.n, tasks)
    units = plan_units(tasks, args.n, done, args.shard)
    prompts = {}                                  # (lang, task_id) -> (prompt, ids), built once
    for unit in units:
        if (unit.lang, unit.task_id) not in prompts:
            prompt = prompt_for(problems, unit, settings)
            prompts[unit.lang, unit.task_id] = prompt, tokenizer.encode(prompt)
    # the KV cache holds the longest prompt of this run and its completion (not the model's whole context):
    # every decode step attends over all of it
    longest = max((len(ids) for _, ids in prompts.values()), default=1)
    generator = loaded.generator(batch_size=args.batch_size,
                                 max_len=cache_length(longest + args.max_new_tokens, context))
    with open(args.out, "a", encoding="utf-8") as out, \
            tqdm(total=sum(u.count for u in units), desc=f"generating ({args.task})", unit="sample") as bar:
        written = write_samples(generator, units, prompts, settings, out, bar.update)
    print(f"wrote {written} samples to {args.out} ({sum(done.values())} were already there)")
    return 0


def take_msrun_rank(args) -> None:
    """Under msrun: this rank's shard, output file and device. No collective is needed; init() only registers the
    rank with msrun's scheduler, which otherwise waits for it."""
    from mindspore.communication import init
    from codegeex_ms.parallel import launched_by_msrun
    if not launched_by_msrun() or "RANK_ID" not in os.environ:
        raise UsageError("--shard msrun: start this command with msrun --worker_num=N --local_worker_num=N ... "
                         "(one rank per device)")
    rank, size = int(os.environ["RANK_ID"]), int(os.environ["RANK_SIZE"])
    init()
    args.shard = (rank, size)
    args.out = args.out.with_name(args.out.name + ".work") / "shards" / f"{rank:05d}.jsonl"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.device and args.device_id is None:
        args.device_id = int(os.environ.get("DEVICE_ID", rank))


def generate_on_cluster(args) -> int:
    """generate as --tasks shards on Slurm or Ray: each task runs this command with --shard RANK/N into the job's
    folder, then a join task merges them into --out."""
    from codegeex_ms import checkpoint
    from codegeex_ms.humaneval import fanout
    engine = engine_args.cluster_engine(args)
    checkpoint.check_folder(args.checkpoint)
    parse_languages(args.languages)
    command = [sys.executable, str(Path(__file__).resolve()), "generate", "--checkpoint",
               str(args.checkpoint.resolve()), "--data-dir", str(args.data_dir.resolve()), "--languages",
               args.languages, "--task", args.task, "--n", str(args.n), "--batch-size", str(args.batch_size),
               "--temperature", str(args.temperature), "--top-p", str(args.top_p), "--top-k", str(args.top_k),
               "--max-new-tokens", str(args.max_new_tokens), "--seed", str(args.seed)]
    command += (["--src-lang", args.src_lang] if args.src_lang else []) + (["--greedy"] if args.greedy else []) + \
        (["--limit", str(args.limit)] if args.limit else []) + (["--device", args.device] if args.device else [])
    summary = engine_args.print_cluster_summary(
        args, fanout.generate_on(engine, command, args.out, args.tasks, gpus_per_task=args.gpus_per_task))
    if summary is None:
        return 0
    took = "" if summary.get("seconds") is None else f" in {summary['seconds']:.0f}s"
    print(f"generated {summary['samples']} samples on {args.engine} ({args.tasks} shards){took} -> {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    from codegeex_ms.humaneval.execution import (EvalOptions, canonical_samples, evaluate, read_jsonl,
                                                 timeouts_from_canonical)
    langs = parse_languages(args.languages)
    if args.samples:
        if args.limit:
            raise UsageError("--limit is for --canonical and --negative-control (a samples file holds what it holds)")
        if not args.samples.is_file():
            raise UsageError(f"--samples {args.samples} not found")
        samples = read_jsonl(args.samples)
        if not samples:
            raise UsageError(f"--samples {args.samples} holds no samples")
    else:
        samples = canonical_samples(args.data_dir, langs, negative=args.negative_control, limit=args.limit)
    run_timeouts = {}
    if args.timeouts_from:
        if not args.timeouts_from.is_file():
            raise UsageError(f"--timeouts-from {args.timeouts_from} not found")
        run_timeouts = timeouts_from_canonical(read_jsonl(args.timeouts_from), args.run_timeout, args.timeout_factor)
        missing = [lang for lang in langs if lang not in run_timeouts]
        if missing:
            raise UsageError(f"--timeouts-from {args.timeouts_from} has no canonical runs of {', '.join(missing)}; "
                             f"run evaluate --canonical with those languages")
        print("run timeouts: " + ", ".join(f"{lang} {run_timeouts[lang]:g}s" for lang in langs))
    workers = args.workers or (os.cpu_count() or 1 if args.engine == "local" else 1)
    options = EvalOptions(languages=langs, workers=workers, compile_timeout=args.compile_timeout,
                          run_timeout=args.run_timeout, run_timeouts={lang: run_timeouts[lang] for lang in langs}
                          if run_timeouts else {}, upstream=args.upstream, isolate=not args.no_isolation,
                          work_dir=args.work_dir)
    if args.shard == "msrun":
        raise UsageError("--shard msrun is for generate (evaluate a samples file with --engine slurm|ray)")
    if args.engine != "local":
        return evaluate_on_cluster(args, options)
    if args.tasks or args.wait:
        raise UsageError("--tasks and --wait are for --engine slurm or ray")
    summary = evaluate(samples, args.out, args.data_dir, options, shard=args.shard)
    parts = [f"{lang} {summary['passed'][lang]}/{summary['total'][lang]}" for lang in langs if summary["total"][lang]]
    if args.canonical:
        slowest = timeouts_from_canonical(read_jsonl(args.out), 0.0, 1.0)
        print("slowest canonical run: " + ", ".join(f"{lang} {t:g}s" for lang, t in slowest.items()) +
              f" (evaluate --timeouts-from {args.out} sets each language's run timeout from these)")
    print(f"evaluated {summary['samples']} samples ({summary['programs_run']} programs run, "
          f"{summary['already_done']} already done) in {summary['seconds']:.0f}s: passed " + ", ".join(parts)
          + f" -> {args.out}")
    return 0


def evaluate_on_cluster(args, options) -> int:
    from codegeex_ms.humaneval import fanout
    if not args.samples:
        raise UsageError(f"--engine {args.engine} evaluates a --samples file (the self-tests run locally)")
    engine = engine_args.cluster_engine(args)
    summary = engine_args.print_cluster_summary(
        args, fanout.evaluate_on(engine, args.samples, args.out, args.data_dir, options, args.tasks))
    if summary is None:
        return 0
    parts = [f"{lang} {summary['passed'][lang]}/{summary['total'][lang]}" for lang in summary["total"]]
    took = "" if summary.get("seconds") is None else f" in {summary['seconds']:.0f}s"
    print(f"evaluated {summary['samples']} samples on {args.engine} ({args.tasks} shards){took}: passed "
          + ", ".join(parts) + f" -> {args.out}")
    return 0


def cmd_paper(args) -> int:
    from codegeex_ms import checkpoint
    from codegeex_ms.humaneval.paper import execute, plan
    if args.scale > 1:
        raise UsageError(f"--scale must be in (0, 1], got {args.scale}")
    checkpoint.check_folder(args.checkpoint)
    langs = parse_languages(args.languages)
    work = plan(args.checkpoint.resolve(), args.out.resolve(), args.data_dir.resolve(), langs, args.scale,
                args.batch_size, args.max_new_tokens, args.seed, args.workers, args.run_timeout, args.timeout_factor)
    script = [sys.executable, str(Path(__file__).resolve())]
    if args.print_commands:
        for step in work.steps:
            print(" ".join(script + step.argv))
        return 0
    settings = {"checkpoint": str(args.checkpoint.resolve()), "scale": args.scale, "batch_size": args.batch_size,
                "max_new_tokens": args.max_new_tokens, "seed": args.seed, "run_timeout_floor": args.run_timeout,
                "timeout_factor": args.timeout_factor}
    return execute(work, args.out.resolve(), settings, script)


def cmd_report(args) -> int:
    from codegeex_ms.humaneval.execution import read_jsonl
    from codegeex_ms.humaneval.report import summarize, write_report
    rows, meta = [], None
    for path in args.results:
        if not path.is_file():
            raise UsageError(f"--results {path} not found")
        rows += read_jsonl(path)
        meta_path = path.with_name(path.name + ".meta.json")
        if meta is None and meta_path.is_file():
            meta = json.loads(meta_path.read_text())
    if not rows:
        raise UsageError("no results in " + ", ".join(map(str, args.results)))
    summary = summarize(rows)
    paths = write_report(summary, args.out, meta)
    print(paths[0].read_text())
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def cmd_doctor(args) -> int:
    from codegeex_ms.humaneval.sandbox import Sandbox
    from codegeex_ms.humaneval.toolchains import APT, JS_MD5, doctor
    checks = doctor()
    for c in checks:
        print(f"[{'ok' if c.ok else 'MISSING'}] {c.name}: {c.detail}" + (f"\n      fix: {c.fix}" if c.fix else ""))
    probe = Sandbox(Path("/var/tmp") / f"codegeex-ms-doctor-{os.getpid()}")
    Sandbox.cleanup(probe.root)
    print(f"[{'ok' if probe.isolated else 'WARN'}] sandbox: " +
          ("namespaces (net, pid, mount) and an unprivileged uid" if probe.isolated else probe.warning))
    missing = [c for c in checks if not c.ok]
    if missing:
        print(f"\nto install everything: {APT}\n(plus `apt-get install -y nodejs npm` where there is no Node.js yet; "
              f"js-md5 ({JS_MD5}) is installed into the run's workspace by npm)")
        return 1
    print("\nall toolchains ready")
    return 0


def cmd_fetch(args) -> int:
    from codegeex_ms.humaneval.dataset import fetch
    args.data_dir.mkdir(parents=True, exist_ok=True)
    for path in fetch(args.data_dir, parse_languages(args.languages)):
        print(f"ok {path}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    # bad input (DatasetError, UsageError, ...) is printed by cli.run as one "error:" line
    return {"generate": cmd_generate, "merge": cmd_merge, "evaluate": cmd_evaluate, "report": cmd_report,
            "paper": cmd_paper, "doctor": cmd_doctor, "fetch-data": cmd_fetch}[args.command](args)


if __name__ == "__main__":
    from codegeex_ms.cli import run
    sys.exit(run(main))
