"""Load test of serve.py on loopback with streaming clients: total tokens/s, time to first token p50/p95 and the
server's peak RSS at 1, 4, 8 and 16 concurrent clients.

    python bench/serve.py --checkpoint /tmp/m350/int8 --batch-size 4 8
    python bench/serve.py --config codegeex_tiny --concurrency 1,4,16 --requests-per-client 4

With --config, a random-weight checkpoint of that config is written to a temporary folder first (speed does not
depend on the weights). For each --batch-size a fresh serve.py starts (its defaults otherwise: the context is
--max-prompt-tokens + --max-new-tokens = 1536), then each concurrency level runs in turn: every client sends its
requests one after another, streamed (``"stream": true``, seeded sampling at temperature 0.8, max_tokens fixed).
Tokens are the server's own count (``/health`` "tokens": tokens of finished samples), so tokens/s is exact; time to
first token is from sending the request to its first text chunk. Peak RSS is the server process's high-water mark
(``VmHWM``) after each level, so it includes start-up. Every response must end with ``[DONE]``, else the run
fails. Check ``uptime`` first: a figure taken while another job loads the CPU is not a result.
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

from codegeex_ms.peak_memory import peak_rss_bytes

REPO = Path(__file__).resolve().parent.parent
PROMPTS = ["def add(a, b):", "int main() {", "class Stack:", "func Sum(xs []int) int {", "fn main() {",
           "public static void main(String[] args) {", "const sum = (a, b) =>", "SELECT name FROM"]


def random_checkpoint(config: str, tokenizer: Path, out: Path) -> Path:
    import mindspore as ms
    from codegeex_ms import checkpoint
    from codegeex_ms.config import resolve_config
    from codegeex_ms.model import CodeGeeX
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    return checkpoint.save(CodeGeeX(resolve_config(config)), out, tokenizer=str(tokenizer.resolve()))


def start_server(folder: Path, batch_size: int, args, tmp: Path):
    import httpx
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp / f"server-b{batch_size}.log"
    server = subprocess.Popen([sys.executable, str(REPO / "serve.py"), "--checkpoint", str(folder), "--port", str(port),
                               "--batch-size", str(batch_size), "--log-level", "warning"] +
                              (["--context", str(args.context)] if args.context else []),
                              stdout=open(log, "w"), stderr=subprocess.STDOUT,
                              env=dict(os.environ, LOG_MF_PATH=str(tmp)))
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return server, url, time.perf_counter() - start
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise SystemExit("server failed:\n" + log.read_text())
        time.sleep(0.5)


def run_level(url: str, concurrency: int, args) -> dict:
    import httpx
    first_token, errors = [], []

    def client(i):
        with httpx.Client(base_url=url, timeout=1800) as c:
            for j in range(args.requests_per_client):
                body = {"prompt": PROMPTS[(i + j) % len(PROMPTS)], "max_tokens": args.max_tokens,
                        "temperature": 0.8, "seed": i * 100 + j, "stream": True}
                t0, first, done = time.perf_counter(), None, False
                with c.stream("POST", "/v1/completions", json=body) as r:
                    for line in r.iter_lines():
                        if line == "data: [DONE]":
                            done = True
                        elif line.startswith("data: ") and first is None and json.loads(line[6:])["choices"][0]["text"]:
                            first = time.perf_counter() - t0
                if not done or r.status_code != 200:
                    errors.append(f"client {i} request {j}: status {r.status_code}, done {done}")
                elif first is not None:
                    first_token.append(first)

    with httpx.Client(base_url=url) as c:
        before = c.get("/health").json()["tokens"]
    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} failed requests, e.g. {errors[0]}")
    with httpx.Client(base_url=url) as c:
        tokens = c.get("/health").json()["tokens"] - before
    ttft = np.array(first_token)
    return {"concurrency": concurrency, "requests": concurrency * args.requests_per_client, "tokens": tokens,
            "wall_s": wall, "tokens_per_s": tokens / wall, "ttft_p50_s": float(np.percentile(ttft, 50)),
            "ttft_p95_s": float(np.percentile(ttft, 95))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="checkpoint folder to serve")
    src.add_argument("--config", help="shipped config name or YAML: serve random weights of it")
    p.add_argument("--tokenizer", type=Path, default=REPO.parent / "shared" / "tokenizer" / "codegeex",
                   help="--config: the tokenizer the checkpoint records (default ../shared/tokenizer/codegeex)")
    p.add_argument("--concurrency", default="1,4,8,16", help="concurrent clients per level (default 1,4,8,16)")
    p.add_argument("--requests-per-client", type=int, default=2, help="requests each client sends (default 2)")
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request (default 64)")
    p.add_argument("--batch-size", type=int, nargs="+", default=[4],
                   help="serve.py --batch-size; one fresh server per value (default 4, serve.py's default)")
    p.add_argument("--context", type=int, help="serve.py --context (default: serve.py's)")
    p.add_argument("--out", type=Path, help="append the results as JSON lines here")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    folder = args.checkpoint or random_checkpoint(args.config, args.tokenizer, tmp / "ckpt")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print("| batch | clients | requests | tokens | tokens/s | x one client | TTFT p50 s | TTFT p95 s | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for batch_size in args.batch_size:
        server, url, start_s = start_server(folder, batch_size, args, tmp)
        try:
            one = None
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                row = run_level(url, concurrency, args)
                row.update(model=args.config or str(args.checkpoint), batch_size=batch_size, server_start_s=start_s,
                           peak_rss_gib=peak_rss_bytes(server.pid) / 2**30)
                one = one or row["tokens_per_s"]
                rows.append(row)
                print(f"| {batch_size} | {concurrency} | {row['requests']} | {row['tokens']} | "
                      f"{row['tokens_per_s']:.1f} | {row['tokens_per_s'] / one:.2f}x | {row['ttft_p50_s']:.2f} | "
                      f"{row['ttft_p95_s']:.2f} | {row['peak_rss_gib']:.2f} |", flush=True)
        finally:
            server.terminate()
            server.wait(120)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.out:
        with open(args.out, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
