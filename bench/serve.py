"""Load test of serve.py on loopback: requests/s, tokens/s and p50/p95 latency at 1, 4 and 16 concurrent clients.

    python bench/serve.py --config codegeex_tiny --tokenizer ../shared/tokenizer/codegeex
    python bench/serve.py --checkpoint checkpoints/codegeex-mini --concurrency 1,4,16 --requests-per-client 4

With --config, a random-weight checkpoint of that config is written to a temporary folder first (speed does not
depend on the weights). Each client sends its requests one after another (seeded sampling, max_tokens fixed);
every response must be a 200 with max_tokens tokens or a natural stop, else the run fails.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))


def random_checkpoint(config: str, tokenizer: Path, out: Path) -> Path:
    import mindspore as ms
    from codegeex_ms import checkpoint
    from codegeex_ms.config import resolve_config
    from codegeex_ms.model import CodeGeeX
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    return checkpoint.save(CodeGeeX(resolve_config(config)), out, tokenizer=str(tokenizer.resolve()))


def main(argv=None) -> int:
    import httpx
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path)
    src.add_argument("--config", help="shipped config name or YAML; random weights")
    p.add_argument("--tokenizer", type=Path, default=REPO.parent / "shared" / "tokenizer" / "codegeex")
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--requests-per-client", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--context", type=int, help="serve.py --context (default: serve.py's)")
    p.add_argument("--out", type=Path, help="append the results as JSON lines here")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    folder = args.checkpoint or random_checkpoint(args.config, args.tokenizer, tmp / "ckpt")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp / "server.log", "w")
    server = subprocess.Popen([sys.executable, str(REPO / "serve.py"), "--checkpoint", str(folder), "--port", str(port),
                               "--batch-size", str(args.batch_size), "--max-new-tokens", str(args.max_tokens),
                               "--log-level", "warning"] + (["--context", str(args.context)] if args.context else []),
                              stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ, LOG_MF_PATH=str(tmp)))
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise SystemExit("server failed:\n" + (tmp / "server.log").read_text())
            time.sleep(0.5)
        prompts = ["def add(a, b):", "int main() {", "class Stack:", "func Sum(xs []int) int {", "fn main() {",
                   "public static void main(String[] args) {", "const sum = (a, b) =>", "SELECT name FROM"]
        rows = []
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            latencies, tokens, errors = [], [0], []

            def client(i):
                with httpx.Client(base_url=url, timeout=600) as c:
                    for j in range(args.requests_per_client):
                        body = {"prompt": prompts[(i + j) % len(prompts)], "max_tokens": args.max_tokens,
                                "temperature": 0.8, "seed": i * 100 + j}
                        t0 = time.perf_counter()
                        r = c.post("/v1/completions", json=body)
                        latencies.append(time.perf_counter() - t0)
                        if r.status_code != 200:
                            errors.append(r.text)
                        else:
                            tokens[0] += r.json()["usage"]["completion_tokens"]

            start = time.perf_counter()
            threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
            if errors:
                raise SystemExit(f"{len(errors)} failed requests, e.g. {errors[0]}")
            lat = np.array(latencies)
            row = {"model": args.config or str(args.checkpoint), "batch_size": args.batch_size,
                   "concurrency": concurrency, "requests": len(lat), "requests_per_s": len(lat) / wall,
                   "tokens_per_s": tokens[0] / wall, "p50_s": float(np.percentile(lat, 50)),
                   "p95_s": float(np.percentile(lat, 95)), "errors": 0}
            rows.append(row)
            print(f"| {row['model']} | {concurrency} | {row['requests']} | {row['requests_per_s']:.2f} | "
                  f"{row['tokens_per_s']:.1f} | {row['p50_s']:.2f} | {row['p95_s']:.2f} | 0 |", flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
    finally:
        server.terminate()
        server.wait(120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
