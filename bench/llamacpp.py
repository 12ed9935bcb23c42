"""llama.cpp as the CPU decode peer of bench/decode.py: a GGUF of a CodeGeeX config's shape, and its decode speed.

A bench dependency only, not the project's:

    CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF" pip install llama-cpp-python==0.3.36 gguf==0.19.0 "numpy<2"

(llama-cpp-python builds llama.cpp from source for this CPU: about 4 minutes on 2 cores.)

The model is llama.cpp's GPT-2 architecture with CodeGeeX's sizes: the config's ``num_layers`` layers plus one
standing in for the top query layer (same weight shapes), hidden, heads, FFN, padded vocabulary, positions,
LayerNorm epsilon, and the word embedding reused as the output head (``output.weight`` is not written, so the
loader ties it, as CodeGeeX does). The weights are random (normal, std 0.02; speed does not depend on them), the
vocabulary a synthetic byte-level BPE (the 256 byte symbols, then two-symbol tokens with their merges,
``<|endoftext|>`` at 50256): only token ids are fed in. Q8_0 comes from llama.cpp's own quantizer. Decoding is
greedy through the low-level API: one context per batch size (n_seq_max = batch, 2 threads, f16 KV cache, flash
attention as llama.cpp decides), the batch's prompts prefilled in one call, then one ``llama_decode`` of a token
per sequence per step and an argmax over its logits.
"""
from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

import numpy as np

EOT = 50256


def write_gguf(path: Path, m, seed: int = 0) -> None:
    """A GPT-2-architecture GGUF with ``m``'s (a ModelConfig's) shapes and random weights, F32."""
    import gguf
    h, layers, vocab = m.hidden_size, m.num_layers + 1, m.padded_vocab_size
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_context_length(m.max_position_embeddings)
    writer.add_embedding_length(h)
    writer.add_feed_forward_length(m.ffn_hidden_size)
    writer.add_block_count(layers)
    writer.add_head_count(m.num_heads)
    writer.add_head_count_kv(m.num_heads)
    writer.add_layer_norm_eps(m.layernorm_epsilon)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    from codegeex_ms.tokenizer.codegeex import bytes_to_unicode
    symbols = [bytes_to_unicode()[b] for b in range(256)]         # GPT-2's byte symbols, in byte order
    tokens, merges = list(symbols), []
    for i in range(vocab - 256):
        a, b = symbols[i // 256], symbols[i % 256]
        tokens.append(a + b)
        merges.append(f"{a} {b}")
    tokens[EOT] = "<|endoftext|>"
    del merges[EOT - 256]
    types = [gguf.TokenType.NORMAL] * vocab
    types[EOT] = gguf.TokenType.CONTROL
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(EOT)
    writer.add_eos_token_id(EOT)
    writer.add_add_bos_token(False)
    rng = np.random.default_rng(seed)

    def normal(*shape):                 # numpy shapes: ggml's {ne0, ne1} reversed
        return (rng.standard_normal(shape, np.float32) * 0.02).astype(np.float32)

    ones, zeros = np.ones(h, np.float32), np.zeros(h, np.float32)
    writer.add_tensor("token_embd.weight", normal(vocab, h))
    writer.add_tensor("position_embd.weight", normal(m.max_position_embeddings, h))
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.attn_norm.bias", zeros)
        writer.add_tensor(f"blk.{i}.attn_qkv.weight", normal(3 * h, h))
        writer.add_tensor(f"blk.{i}.attn_qkv.bias", np.zeros(3 * h, np.float32))
        writer.add_tensor(f"blk.{i}.attn_output.weight", normal(h, h))
        writer.add_tensor(f"blk.{i}.attn_output.bias", zeros)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.ffn_norm.bias", zeros)
        writer.add_tensor(f"blk.{i}.ffn_up.weight", normal(m.ffn_hidden_size, h))
        writer.add_tensor(f"blk.{i}.ffn_up.bias", np.zeros(m.ffn_hidden_size, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", normal(h, m.ffn_hidden_size))
        writer.add_tensor(f"blk.{i}.ffn_down.bias", zeros)
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output_norm.bias", zeros)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def quantize_q8_0(src: Path, out: Path) -> None:
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.nthread = os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize {src} -> {out} failed ({rc})")


def weight_bytes_per_token(path: Path) -> int:
    """Bytes of weights one decode step reads: every tensor once (the tied head included), but the position
    table, of which it reads one row."""
    import gguf
    return sum(int(t.n_bytes) for t in gguf.GGUFReader(str(path)).tensors if t.name != "position_embd.weight")


def _quiet(level, text, user_data):       # llama.cpp logs to stderr by default: keep the bench's output readable
    return None


def decode_speed(path: Path, prompts: dict[int, np.ndarray], new_tokens: int, threads: int = 2) -> dict:
    """Per batch size b: prefill and decode tokens/s of b sequences (``prompts[b]``: [b, prompt tokens] ids), greedy,
    after an untimed warm-up run, and the first greedy ids of sequence 0."""
    import llama_cpp
    callback = llama_cpp.llama_log_callback(_quiet)
    llama_cpp.llama_log_set(callback, ctypes.c_void_p())
    llama_cpp.llama_backend_init()
    start = time.perf_counter()
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
    if not model:
        raise RuntimeError(f"llama.cpp could not load {path}")
    load_s = time.perf_counter() - start
    vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    results = {}
    for b, prompt in prompts.items():
        length = prompt.shape[1] + new_tokens
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = -(-length // 256) * 256 * b
        params.n_batch = params.n_ubatch = max(512, b * prompt.shape[1])
        params.n_seq_max = b
        params.n_threads = params.n_threads_batch = threads
        ctx = llama_cpp.llama_init_from_model(model, params)
        batch = llama_cpp.llama_batch_init(params.n_batch, 0, b)

        def decode(entries):            # entries: (token, position, sequence, wants logits)
            batch.n_tokens = len(entries)
            for i, (token, pos, seq, logits) in enumerate(entries):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = int(token), pos, 1
                batch.seq_id[i][0], batch.logits[i] = seq, logits
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
            rows = sum(e[3] for e in entries)
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx), shape=(rows, vocab))
            return logits.argmax(-1)

        def run():
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            s = prompt.shape[1]
            t0 = time.perf_counter()
            nxt = decode([(prompt[q, p], p, q, p == s - 1) for q in range(b) for p in range(s)])
            t1 = time.perf_counter()
            first = [int(nxt[0])]
            for step in range(new_tokens - 1):
                nxt = decode([(nxt[q], s + step, q, True) for q in range(b)])
                first.append(int(nxt[0]))
            return t1 - t0, time.perf_counter() - t1, first

        start = time.perf_counter()
        run()                           # warm-up
        warm = time.perf_counter() - start
        pre, dec, first = run()
        results[b] = {"prefill": b * prompt.shape[1] / pre, "decode": b * (new_tokens - 1) / dec, "tokens": first,
                      "warmup_s": warm}
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return {"load_s": load_s, "batches": results}
