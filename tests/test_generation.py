"""The KV-cached engine: incremental logits, greedy parity with the reference, sampling, no recompilation."""
from __future__ import annotations

import numpy as np
import pytest

from reference_codegeex import random_reference_model, reference_logits, torch  # noqa: F401  (torch: skip if absent)


@pytest.fixture(scope="module")
def tokenizer(shared_dir):
    from codegeex_ms.tokenizer import load
    return load(shared_dir / "tokenizer" / "codegeex")


@pytest.fixture(scope="module")
def pair(tiny_config, tmp_path_factory, ms_context):
    """The reference PyTorch model and ours on the same converted tiny weights."""
    import codegeex_ms
    from codegeex_ms.convert import main
    reference = random_reference_model(tiny_config.model, seed=5)
    folder = tmp_path_factory.mktemp("gen")
    torch.save({"module": reference.state_dict_for_save_checkpoint()}, folder / "ref.pt")
    assert main([str(folder / "ref.pt"), str(folder / "ours"), "--config", "codegeex_tiny"]) == 0
    return reference, codegeex_ms.load(folder / "ours")


def _scalars(b, k=1024):
    import mindspore as ms
    return (ms.Tensor(np.full((b, k), 0.5, np.float32)), ms.Tensor(1.0, ms.float32), ms.Tensor(k, ms.int32),
            ms.Tensor(2.0, ms.float32))


def test_incremental_logits_equal_full_forward(pair):
    import mindspore as ms
    from codegeex_ms.generation import CachedCodeGeeX
    _, model = pair
    tokens = np.random.default_rng(0).integers(0, 50400, size=(2, 20)).astype(np.int32)
    full = model(ms.Tensor(tokens)).asnumpy()
    cached = CachedCodeGeeX(model, batch_size=2, max_len=32, return_logits=True)
    prompt = np.full((2, 16), 50256, np.int32)          # prompt of 12 tokens right-padded to a bucket of 16
    prompt[:, :12] = tokens[:, :12]
    logits = cached(ms.Tensor(prompt), ms.Tensor(0, ms.int32), ms.Tensor(11, ms.int32), *_scalars(2)).asnumpy()
    assert np.abs(logits - full[:, 11]).max() < 1e-5
    for p in range(12, 20):
        logits = cached(ms.Tensor(tokens[:, p:p + 1]), ms.Tensor(p, ms.int32), ms.Tensor(0, ms.int32),
                        *_scalars(2)).asnumpy()
        assert np.abs(logits - full[:, p]).max() < 1e-5, p
    assert len(cached.compile_cache) == 2                  # one prefill graph, one decode graph


def test_greedy_equals_reference_greedy(pair, tokenizer):
    from codegeex_ms.generation import Generator, SamplingConfig
    reference, model = pair
    prompt = tokenizer.encode("# language: Python\ndef fibonacci(n):\n")
    generator = Generator(model, tokenizer, batch_size=1, max_len=64)
    result = generator.generate(prompt, SamplingConfig(max_new_tokens=24, greedy=True))
    # Reference: full forward of the growing sequence, argmax over the real vocabulary (padding rows are not tokens).
    sequence = list(prompt)
    expected = []
    for _ in range(len(result.token_ids[0]) + (result.finish_reasons[0] == "eos")):
        logits = reference_logits(reference, np.array([sequence]))[0, -1, :50400]
        token = int(np.argmax(logits))
        expected.append(token)
        sequence.append(token)
        if token == 50256:
            break
    assert result.token_ids[0] == [t for t in expected if t != 50256]
    assert len(result.token_ids[0]) > 0


def test_no_recompilation_while_decoding(pair, tokenizer):
    from codegeex_ms.generation import Generator, SamplingConfig
    _, model = pair
    generator = Generator(model, tokenizer, batch_size=3, max_len=128)
    config = SamplingConfig(max_new_tokens=30, temperature=0.9, top_p=0.9, seed=3)
    generator.generate(tokenizer.encode("int main() {"), config)
    generator.generate(tokenizer.encode("public class A {\n  int f() {"), config)  # same 16-token bucket
    # one graph each: the one-row prefill (16 tokens), the cache row copy, the first-token sampler, the decode step
    cells = (generator.prefill_cell, generator.copy_cell, generator.first_sampler, generator.decode_cell)
    assert [len(c.compile_cache) for c in cells] == [1, 1, 1, 1]
    assert generator.call_shapes == {(1, 16), (3, 1)}


def test_seed_reproducible(pair, tokenizer):
    from codegeex_ms.generation import Generator, SamplingConfig
    _, model = pair
    generator = Generator(model, tokenizer, batch_size=2, max_len=64)
    ids = tokenizer.encode("def f(x):")
    a = generator.generate(ids, SamplingConfig(max_new_tokens=12, temperature=1.0, seed=7))
    b = generator.generate(ids, SamplingConfig(max_new_tokens=12, temperature=1.0, seed=7))
    c = generator.generate(ids, SamplingConfig(max_new_tokens=12, temperature=1.0, seed=8))
    assert a.token_ids == b.token_ids and a.token_ids != c.token_ids
    assert a.token_ids[0] != a.token_ids[1]                  # the samples of a batch differ


def test_stop_string_and_length(pair, tokenizer):
    from codegeex_ms.generation import Generator, SamplingConfig
    _, model = pair
    generator = Generator(model, tokenizer, batch_size=1, max_len=64)
    ids = tokenizer.encode("x")
    free = generator.generate(ids, SamplingConfig(max_new_tokens=10, greedy=True))
    assert free.finish_reasons == ["length"] and len(free.token_ids[0]) == 10
    stop = free.raw_completions[0][3:6]
    cut = generator.generate(ids, SamplingConfig(max_new_tokens=10, greedy=True, stop=[stop]))
    assert cut.finish_reasons == ["stop"]
    assert cut.completions[0] == free.raw_completions[0][:free.raw_completions[0].find(stop)]
    with pytest.raises(ValueError, match="exceeds the context of 64 tokens"):
        generator.generate(ids * 60, SamplingConfig(max_new_tokens=10))
    with pytest.raises(ValueError, match="the prompt is empty"):
        generator.generate([], SamplingConfig())


# ---------------------------------------------------------------------------------------------------------
# The in-graph sampler on a small vocabulary: many seeded draws at once, compared with the distribution.

def _draws(logits, temperature=1.0, top_k=None, top_p=2.0, n=40000, seed=0):
    import mindspore as ms
    from codegeex_ms.generation import Sampler
    v = len(logits)
    sampler = Sampler(vocab_size=v, candidates=v)
    noise = np.clip(np.random.default_rng(seed).random((n, v), dtype=np.float32), 1e-12, 1 - 1e-7)
    batch = np.tile(np.asarray(logits, np.float32), (n, 1))
    ids = sampler(ms.Tensor(batch), ms.Tensor(noise), ms.Tensor(temperature, ms.float32),
                  ms.Tensor(top_k or v, ms.int32), ms.Tensor(top_p, ms.float32)).asnumpy()
    return np.bincount(ids, minlength=v) / n


def _softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum()


def test_sampler_temperature_matches_softmax(ms_context):
    logits = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    for t in (1.0, 0.5, 2.0):
        assert np.abs(_draws(logits, temperature=t) - _softmax(logits / t)).max() < 0.01


def test_sampler_top_k(ms_context):
    logits = np.array([0.1, 2.0, 1.0, 1.5, -1.0])
    freq = _draws(logits, top_k=2)
    expected = np.zeros(5)
    expected[[1, 3]] = _softmax(logits[[1, 3]])
    assert np.abs(freq - expected).max() < 0.01


def test_sampler_top_p_is_inclusive(ms_context):
    probs = np.array([0.05, 0.5, 0.1, 0.2, 0.15])               # sorted: .5 .2 .15 | .1 .05
    freq = _draws(np.log(probs), top_p=0.8)
    kept = np.array([0, 0.5, 0, 0.2, 0.15]) / 0.85                # the crossing token (.15) is kept
    assert np.abs(freq - kept).max() < 0.01


def test_sampler_greedy_noise_is_argmax(ms_context):
    import mindspore as ms
    from codegeex_ms.generation import _GREEDY_NOISE, Sampler
    sampler = Sampler(vocab_size=7, candidates=7)
    logits = np.random.default_rng(1).normal(size=(50, 7)).astype(np.float32)
    ids = sampler(ms.Tensor(logits), ms.Tensor(np.full((50, 7), _GREEDY_NOISE, np.float32)),
                  ms.Tensor(1.0, ms.float32), ms.Tensor(7, ms.int32), ms.Tensor(2.0, ms.float32)).asnumpy()
    np.testing.assert_array_equal(ids, logits.argmax(-1))


def test_rows_with_different_prompts_match_their_solo_runs(pair, tokenizer):
    """Batching requests together (per-row positions, settings, noise) changes nothing for each request."""
    from codegeex_ms.generation import Generator, SamplingConfig
    _, model = pair
    requests = [(tokenizer.encode("def fibonacci(n):\n"), SamplingConfig(max_new_tokens=10, greedy=True), 1),
                (tokenizer.encode("// language: C++\nint main() {\n  int total = 0;\n"),
                 SamplingConfig(max_new_tokens=7, temperature=0.7, top_p=0.9, seed=5), 2)]
    together = Generator(model, tokenizer, batch_size=4, max_len=96).generate_rows(requests)
    for request, result in zip(requests, together):
        solo = Generator(model, tokenizer, batch_size=request[2], max_len=96).generate_rows([request])[0]
        assert result.token_ids == solo.token_ids and result.completions == solo.completions
    assert len(together[1].token_ids) == 2 and len(together[1].token_ids[1]) <= 7


@pytest.mark.parametrize("fused", [True, False])
def test_chunked_prefill_draws_what_one_whole_prefill_draws(pair, tokenizer, fused):
    """Prompts of 150, 40 and 101 tokens, prefilled in chunks of 64 positions (the last call moved
    back so that it ends at the 160-position cache's end) or in one 160-token call: the same greedy and seeded
    samples, on the layer kernels (FusedPrefillStep) and on the graph path."""
    from codegeex_ms.generation import FusedPrefillStep, Generator, SamplingConfig
    _, model = pair
    rng = np.random.default_rng(7)
    requests = [(rng.integers(1, 8000, n).tolist(), SamplingConfig(max_new_tokens=6, temperature=0.8, top_p=0.9,
                                                                   seed=n, greedy=n == 40), 1) for n in (150, 40, 101)]
    whole = Generator(model, tokenizer, batch_size=3, max_len=160)
    chunked = Generator(model, tokenizer, batch_size=3, max_len=160, prefill_chunk=64)
    for generator in (whole, chunked):
        assert isinstance(generator.prefill_cell, FusedPrefillStep)        # a float32 model on a CPU
        if not fused:
            graph_path(generator)
    expected = [r.token_ids for r in whole.generate_rows(requests)]
    assert [r.token_ids for r in chunked.generate_rows(requests)] == expected
    # each prompt prefilled on its own: 40, 101 and 150 tokens in buckets of 64, 128 and 160 (the cache's end);
    # in chunks of 64: 64 | 64 + 64 (37 left, the call moved back) | 64 + 64 + 32 (22 left)
    assert whole.call_shapes == {(1, 64), (1, 128), (1, 160), (3, 1)}
    assert chunked.call_shapes == {(1, 64), (1, 32), (3, 1)}
    assert chunked.buckets() == [16, 32, 64] and chunked.buckets(10) == [16]
    with pytest.raises(ValueError, match="prefill_chunk"):
        Generator(model, tokenizer, batch_size=1, max_len=160, prefill_chunk=8)


def graph_path(generator):
    """Run a generator's steps on the graph path (as on Ascend, GPU or without the kernels) instead of the kernels."""
    generator.prefill_cell, generator.decode_cell = generator.prefill_cached, generator.cached
    return generator


def mixed_requests(tokenizer):
    """Greedy and sampled requests, short and long prompts (a 150-token one takes three 64-token prefill chunks),
    more samples than some batches have rows, different lengths and stop rules, and one request continuing
    another's samples (first sample index 2)."""
    from codegeex_ms.generation import SamplingConfig
    rng = np.random.default_rng(11)
    long_prompt = rng.integers(1, 8000, 150).tolist()
    return [(tokenizer.encode("def fibonacci(n):\n"), SamplingConfig(max_new_tokens=10, temperature=0.8, seed=3), 3),
            (tokenizer.encode("int main() {\n  int total = 0;\n"), SamplingConfig(max_new_tokens=7, greedy=True), 2),
            (long_prompt, SamplingConfig(max_new_tokens=12, temperature=0.7, top_p=0.9, top_k=40, seed=5), 4),
            (tokenizer.encode("# language: Python\ndef add(a, b):\n"),
             SamplingConfig(max_new_tokens=16, temperature=1.0, seed=9, language="python"), 5),
            (tokenizer.encode("def fibonacci(n):\n"), SamplingConfig(max_new_tokens=10, temperature=0.8, seed=3), 2, 2)]


def test_samples_do_not_depend_on_the_batch_size(pair, tokenizer):
    """Per-sample seeds and rows refilled as samples finish: batches of 1, 3 and 8 rows give the same samples,
    bit for bit, and a request asking for samples 2..3 gets samples 2 and 3 of the same request with n=5."""
    from codegeex_ms.generation import Generator
    _, model = pair
    requests = mixed_requests(tokenizer)
    results = {b: Generator(model, tokenizer, batch_size=b, max_len=192).generate_rows(requests) for b in (1, 3, 8)}
    tokens = {b: [r.token_ids for r in rs] for b, rs in results.items()}
    assert tokens[1] == tokens[3] == tokens[8]
    assert [r.completions for r in results[1]] == [r.completions for r in results[8]]
    assert tokens[1][4][0] == tokens[1][0][2]                 # sample 2 of the same request, asked for twice
    five = Generator(model, tokenizer, batch_size=3, max_len=192).generate_rows([requests[0][:2] + (5,)])[0]
    assert five.timings["prefills"] == 1        # samples 3 and 4 start later, copied from the same prefilled row
    assert five.token_ids[:3] == tokens[1][0] and five.token_ids[2:4] == tokens[1][4]
    assert len({tuple(t) for t in five.token_ids}) == 5                       # the samples differ
    assert all(len(t) <= 10 for t in five.token_ids)


def test_continuous_batching_equals_one_at_a_time(pair, tokenizer):
    """Requests decoded together, rows refilled from the queue, give what each request gives alone in the same
    engine, on the graph path too (there the batch size is kept: the device's matmuls may sum in another order
    for another number of rows); a request's samples that start together share one prefill."""
    from codegeex_ms.generation import Generator
    _, model = pair
    requests = mixed_requests(tokenizer)
    for path in (lambda g: g, graph_path):
        generator = path(Generator(model, tokenizer, batch_size=4, max_len=192))
        together = generator.generate_rows(requests)
        # 16 samples of 5 requests (4 distinct prompts): at least one prefill per prompt, fewer than one per sample
        assert 4 <= together[0].timings["prefills"] < 16
        for request, result in zip(requests, together):
            solo = generator.generate_rows([request])[0]
            assert result.token_ids == solo.token_ids and result.finish_reasons == solo.finish_reasons
            assert result.completions == solo.completions


def test_a_cancelled_request_stops_and_the_others_do_not_notice(pair, tokenizer):
    from codegeex_ms.generation import Generator, SamplingConfig
    _, model = pair
    generator = Generator(model, tokenizer, batch_size=2, max_len=96)
    requests = [(tokenizer.encode("def f(x):"), SamplingConfig(max_new_tokens=20, temperature=0.9, seed=1), 2),
                (tokenizer.encode("int g() {"), SamplingConfig(max_new_tokens=20, temperature=0.9, seed=2), 2)]
    seen = []
    results = generator.generate_rows(requests, on_text=lambda key, i, text: seen.append((key, i)),
                                      cancelled=lambda key: key == 0 and len(seen) >= 3)
    assert results[0].finish_reasons == ["cancelled", "cancelled"]
    assert results[1].token_ids == generator.generate_rows(requests[1:])[0].token_ids
    assert {i for key, i in seen if key == 1} == {0, 1}


def test_prefill_buckets_double_and_a_server_warms_them_all(pair, tokenizer):
    from codegeex_ms.generation import Generator, SamplingConfig, cache_length, prefill_bucket
    assert [prefill_bucket(n, 2048) for n in (1, 16, 17, 64, 65, 128, 129, 300, 1025, 2048)] == \
        [16, 16, 32, 64, 128, 128, 256, 512, 2048, 2048]
    assert prefill_bucket(300, 320) == 320                        # never longer than the cache
    assert [cache_length(n, 2048) for n in (1, 64, 65, 1536, 4000)] == [64, 64, 128, 1536, 2048]
    _, model = pair
    generator = Generator(model, tokenizer, batch_size=1, max_len=200)
    assert generator.buckets() == [16, 32, 64, 128, 200] and generator.buckets(100) == [16, 32, 64, 128]
    generator.warmup(longest_prompt=200)
    assert generator.call_shapes == {(1, 16), (1, 32), (1, 64), (1, 128), (1, 200), (1, 1)}
    compiled = len(generator.prefill_cell.compile_cache)
    generator.generate(list(range(1, 150)), SamplingConfig(max_new_tokens=4, greedy=True))
    assert len(generator.prefill_cell.compile_cache) == compiled   # a 149-token prompt found its graph ready
