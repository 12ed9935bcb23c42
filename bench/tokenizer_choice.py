"""Validation loss per byte of checkpoints with different tokenizers, on the same raw documents.

Loss per token cannot compare tokenizers (a token of one is not a token of the other); loss per byte of the
same text can. The documents are the validation split of a prepared corpus (decoded back to text, exact for
both tokenizers of this project), evaluated one by one: EOD, then the document in windows of the model's
context, summing the cross entropy of every document token.

    python bench/tokenizer_choice.py --data /work/data/spm8k_shards --docs 200 \\
        --checkpoint runs/cmp_spm/checkpoints/step-00000030 --checkpoint runs/cmp_cgx/checkpoints/step-00000030
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def validation_documents(data_dir: Path, count: int) -> list[str]:
    """The first ``count`` complete documents of the validation split, as text."""
    from codegeex_ms.data.pack import open_dataset
    from codegeex_ms.tokenizer import load
    manifest = json.loads((data_dir / "manifest.json").read_text())
    tokenizer = load(manifest["tokenizer"]["path"])
    eod = manifest["tokenizer"]["eos_id"]
    stream = []
    for (ids,) in open_dataset(data_dir, "validation").create_tuple_iterator(output_numpy=True, num_epochs=1):
        stream.extend(ids[:-1].tolist())   # windows overlap by one id
    docs, current = [], []
    for token in stream:
        if token == eod:
            if current:
                docs.append(tokenizer.decode(current))
            current = []
            if len(docs) == count:
                break
        else:
            current.append(token)
    return docs[1:count] if len(docs) > 1 else docs   # the first may be a tail cut by the window start


def document_scores(model, tokenizer, docs: list[str], batch: int = 2):
    """Per document: (summed cross entropy in nats, tokens scored, argmax predictions of the scored positions).
    Each document is scored from an EOD, in windows of the model's context."""
    import mindspore as ms
    from mindspore import Tensor, ops
    eod, seq = model.config.model.eod_token_id, model.config.model.max_position_embeddings

    @ms.jit
    def score(inputs, labels, mask):
        logits = model(inputs)                                                    # [b, s, V]
        logp = ops.log_softmax(logits, -1)
        picked = ops.gather_elements(logp, 2, labels.reshape(labels.shape[0], -1, 1)).squeeze(-1)
        return -(picked * mask).sum(-1), ops.argmax(logits, -1)

    windows, owners = [], []
    for d, doc in enumerate(docs):
        ids = [eod] + tokenizer.encode(doc)
        for start in range(0, len(ids) - 1, seq):
            piece = ids[start:start + seq + 1]
            window = np.full(seq + 1, eod, np.int32)
            window[:len(piece)] = piece
            windows.append((window, len(piece) - 1))
            owners.append(d)
    nats, tokens, argmax = [0.0] * len(docs), [0] * len(docs), [[] for _ in docs]
    for i in range(0, len(windows), batch):
        chunk = windows[i:i + batch]
        chunk = chunk + [(np.full(seq + 1, eod, np.int32), 0)] * (batch - len(chunk))
        w = np.stack([c[0] for c in chunk])
        mask = np.zeros((batch, seq), np.float32)
        for j, (_, n) in enumerate(chunk):
            mask[j, :n] = 1
        sums, top = score(Tensor(w[:, :-1]), Tensor(w[:, 1:]), Tensor(mask))
        sums, top = sums.asnumpy(), top.asnumpy()
        for j, (_, n) in enumerate(chunk):
            if i + j < len(windows):
                d = owners[i + j]
                nats[d] += float(sums[j])
                tokens[d] += n
                argmax[d].append(top[j, :n])
    return [(nats[d], tokens[d], np.concatenate(argmax[d]) if argmax[d] else np.zeros(0, np.int64))
            for d in range(len(docs))]


def loss_per_byte(checkpoint_dir: Path, docs: list[str], batch: int = 2) -> dict:
    import mindspore as ms
    from codegeex_ms import checkpoint
    from codegeex_ms.tokenizer import load

    ms.set_context(mode=ms.GRAPH_MODE)
    model = checkpoint.load(checkpoint_dir)
    tokenizer = load(checkpoint.tokenizer_path(checkpoint_dir))
    start = time.perf_counter()
    scores = document_scores(model, tokenizer, docs, batch)
    total, tokens = sum(s[0] for s in scores), sum(s[1] for s in scores)
    n_bytes = sum(len(d.encode()) for d in docs)
    return {"checkpoint": str(checkpoint_dir), "tokenizer": tokenizer.identity(), "documents": len(docs),
            "bytes": n_bytes, "tokens": tokens, "bytes_per_token": n_bytes / tokens, "nats_per_token": total / tokens,
            "bits_per_byte": total / n_bytes / math.log(2), "seconds": time.perf_counter() - start}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="a prepared corpus (its validation split is used)")
    p.add_argument("--checkpoint", type=Path, action="append", required=True, help="checkpoint folder (repeat)")
    p.add_argument("--docs", type=int, default=200, help="validation documents to use (default 200)")
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)
    docs = validation_documents(args.data, args.docs + 1)
    results = [loss_per_byte(c, docs) for c in args.checkpoint]
    print(f"{len(docs)} validation documents, {sum(len(d.encode()) for d in docs) / 1e6:.2f} MB")
    print("| checkpoint | vocabulary | bytes/token | nats/token | bits/byte |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['checkpoint']} | {r['tokenizer']['kind']} {r['tokenizer']['vocab_size']} | "
              f"{r['bytes_per_token']:.2f} | {r['nats_per_token']:.3f} | {r['bits_per_byte']:.3f} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
