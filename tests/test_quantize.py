"""int8 weight-only quantization: error bounds, the quantized model's semantics, the CLI."""
from __future__ import annotations

import numpy as np
import pytest

from codegeex_ms.cli import UsageError

from codegeex_ms.layout import is_quantized_weight, parameter_shapes
from codegeex_ms.cli import run
from codegeex_ms.quantize_export import main, quantize_rows


def test_quantize_rows_error_bound():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 48)).astype(np.float32) * rng.uniform(0.01, 3, size=(64, 1)).astype(np.float32)
    w[5] = 0.0                                                      # an all-zero row
    q, scale = quantize_rows(w)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (64,)
    np.testing.assert_allclose(scale[np.arange(64) != 5], np.abs(w).max(1)[np.arange(64) != 5] / 127, rtol=1e-6)
    assert np.abs(q).max() == 127
    error = np.abs(q.astype(np.float32) * scale[:, None] - w)
    assert (error <= scale[:, None] / 2 + 1e-6).all()               # at most half a step per element
    assert (q[5] == 0).all()


def test_layout_lists_scales_for_the_six_linears(tiny_config):
    shapes = parameter_shapes(tiny_config.model, "int8")
    scales = [n for n in shapes if n.endswith("_scale")]
    assert len(scales) == 6 * 3
    assert shapes["top_query_layer.mlp.dense_h_to_4h.weight_scale"] == (256,)
    assert not is_quantized_weight("word_embeddings.weight")
    assert not is_quantized_weight("layers.0.attention.query.bias")


@pytest.fixture(scope="module")
def quantized(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "int8"
    assert main(["quantize", str(tiny_checkpoint), str(out), "--embedding", "keep"]) == 0     # int8 Linears only
    return out


def test_quantized_checkpoint_runs_and_equals_its_dequantized_weights(tiny_checkpoint, quantized, ms_context):
    import mindspore as ms
    import codegeex_ms
    from codegeex_ms.safetensors_io import SafetensorsReader
    q_model = codegeex_ms.load(quantized)
    assert q_model.config.precision.weight_quant == "int8"
    assert q_model.layers[0].attention.query.weight.dtype == ms.int8
    ref = codegeex_ms.load(tiny_checkpoint)
    reader = SafetensorsReader(quantized / "model.safetensors")
    fp_logits_tokens = np.arange(20).reshape(1, 20) + 1000
    full = ref(ms.Tensor(fp_logits_tokens, ms.int32)).asnumpy()
    for p in ref.get_parameters():                     # the fp32 model with W := W_int8 * scale
        if is_quantized_weight(p.name):
            p.set_data(ms.Tensor(reader.get(p.name).astype(np.float32) * reader.get(p.name + "_scale")[:, None]))
    dequantized = ref(ms.Tensor(fp_logits_tokens, ms.int32)).asnumpy()
    got = q_model(ms.Tensor(fp_logits_tokens, ms.int32)).asnumpy()
    assert np.abs(got - dequantized).max() < 1e-4
    assert np.abs(got - full).max() < 0.05 * np.abs(full).max()
    assert (got.argmax(-1) == full.argmax(-1)).mean() >= 0.9


def test_quantized_greedy_generation(quantized, tiny_checkpoint, shared_dir, ms_context):
    import codegeex_ms
    from codegeex_ms.generation import Generator, SamplingConfig
    from codegeex_ms.tokenizer import load
    tok = load(shared_dir / "tokenizer" / "codegeex")
    prompt = tok.encode("def add(a, b):\n")
    from codegeex_ms import kernels
    outputs = []
    for use_kernels in (True, False):       # the CPU int8 kernels vs MindSpore's cast-then-matmul path
        if use_kernels:
            model = codegeex_ms.load(quantized)
        else:
            with kernels.disabled():
                model = codegeex_ms.load(quantized)
        assert (model.layers[0].mlp.dense_h_to_4h.int8_kernel is not None) == (use_kernels and kernels.enabled())
        gen = Generator(model, tok, batch_size=1, max_len=64)
        outputs.append(gen.generate(prompt, SamplingConfig(max_new_tokens=12, greedy=True)).token_ids)
    assert outputs[0] == outputs[1] and len(outputs[0][0]) == 12


def test_bad_input(quantized, tiny_checkpoint, tmp_path, capsys):
    assert run(main, ["quantize", str(quantized), str(tmp_path / "again"), "--embedding", "keep"]) == 2
    assert "already quantized (int8); only --embedding int8 applies" in capsys.readouterr().err
    assert run(main, ["quantize", str(tiny_checkpoint), str(quantized)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert run(main, ["quantize", str(tmp_path), str(tmp_path / "x")]) == 2
    assert "config.yaml is missing" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.tmp").exists()


def test_an_int8_folder_takes_the_int8_head_alone(quantized, tiny_checkpoint, tmp_path, capsys):
    """quantize --embedding int8 on a folder with int8 Linears copies them and quantizes the embedding: the same
    tensors as quantizing the float original with --embedding int8 in one go; a second time is refused."""
    from codegeex_ms.safetensors_io import SafetensorsReader
    assert main(["quantize", str(quantized), str(tmp_path / "upgraded"), "--embedding", "int8"]) == 0
    assert main(["quantize", str(tiny_checkpoint), str(tmp_path / "direct")]) == 0                # the default
    upgraded, direct = (SafetensorsReader(tmp_path / name / "model.safetensors") for name in ("upgraded", "direct"))
    assert upgraded.names == direct.names
    for name in direct.names:
        np.testing.assert_array_equal(upgraded.get(name), direct.get(name), err_msg=name)
    assert run(main, ["quantize", str(tmp_path / "upgraded"), str(tmp_path / "again"), "--embedding", "int8"]) == 2
    assert "already quantized (int8, embedding int8)" in capsys.readouterr().err


def test_fp16_copy_keeps_int8_and_halves_the_rest(tiny_checkpoint, tmp_path):
    from codegeex_ms.safetensors_io import SafetensorsReader
    out = tmp_path / "int8-fp16"
    assert main(["quantize", str(tiny_checkpoint), str(out), "--dtype", "float16", "--embedding", "keep"]) == 0
    reader = SafetensorsReader(out / "model.safetensors")
    assert reader.dtype("layers.0.attention.query.weight") == np.int8
    assert reader.dtype("word_embeddings.weight") == np.float16
    assert reader.dtype("layers.0.attention.query.weight_scale") == np.float32


def _greedy(generator, tok, prompt, n=12):
    from codegeex_ms.generation import SamplingConfig
    return generator.generate(tok.encode(prompt), SamplingConfig(max_new_tokens=n, greedy=True)).token_ids


@pytest.mark.parametrize("source", ["fp32", "int8"])
def test_mindir_export_generates_what_the_checkpoint_does(source, tiny_checkpoint, quantized, shared_dir, tmp_path,
                                                          ms_context):
    import json
    from codegeex_ms.checkpoint import CheckpointError
    from codegeex_ms.loading import load_for_inference
    folder = tiny_checkpoint if source == "fp32" else quantized
    out = tmp_path / "mindir"
    assert main(["export", str(folder), str(out), "--batch-size", "1", "--max-len", "128"]) == 0
    meta = json.loads((out / "export.json").read_text())
    assert meta["batch_size"] == 1 and meta["max_len"] == 128
    assert meta["weight_quant"] == ("int8" if source == "int8" else "none")
    assert meta["inputs"][0] == {"name": "tokens", "shape": [1, -1], "dtype": "int32"}
    # the same surface opens both: a generator of the rows and cache asked for, or the graph's fixed ones
    eager = load_for_inference(folder).generator(batch_size=1, max_len=128)
    exported = load_for_inference(mindir=out)
    tok = exported.tokenizer
    assert exported.context == 128 and exported.fixed_batch_size == 1
    graph = exported.generator(batch_size=1, max_len=100)
    assert exported.generator() is graph and (graph.batch_size, graph.max_len) == (1, 128)
    with pytest.raises(CheckpointError, match=r"2 rows do not fit the batch size 1 .*--batch-size 2"):
        exported.generator(batch_size=2)
    with pytest.raises(CheckpointError, match=r"a 256-token cache does not fit the 128 tokens .*--max-len 256"):
        exported.generator(max_len=256)
    # two prompts in turn: the graph's cache state is overwritten correctly by the second prefill
    for prompt in ("def add(a, b):\n", "int main() {\n    return"):
        assert _greedy(graph, tok, prompt) == _greedy(eager, tok, prompt)


def test_export_replaces_a_folder_whole_and_rejects_bad_input(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "mindir"
    out.mkdir()
    (out / "stale.txt").write_text("from an older export")
    with pytest.raises(UsageError, match="already exists; pass --overwrite to replace it"):     # refused: it exists
        main(["export", str(tiny_checkpoint), str(out), "--max-len", "64"])
    assert [p.name for p in out.iterdir()] == ["stale.txt"]
    assert main(["export", str(tiny_checkpoint), str(out), "--max-len", "64", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "export.json", "model.mindir", "tokenizer.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["mindir"]          # no temporary or old folder left
    assert run(main, ["export", str(tmp_path / "nothing"), str(tmp_path / "x")]) == 2
    assert "checkpoint folder " + str(tmp_path / "nothing") + " does not exist" in capsys.readouterr().err
    half = tmp_path / "half"                    # a folder without its config.yaml
    half.mkdir()
    (half / "model.safetensors").symlink_to(tiny_checkpoint / "model.safetensors")
    assert run(main, ["export", str(half), str(tmp_path / "x")]) == 2
    assert "config.yaml is missing" in capsys.readouterr().err
    assert run(main, ["export", str(tiny_checkpoint), str(tmp_path / "y"), "--compute-dtype", "bfloat16"]) == 2
    assert "bfloat16 does not run on CPU" in capsys.readouterr().err
    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    for name in ("config.yaml", "model.safetensors"):
        (no_tok / name).symlink_to(tiny_checkpoint / name)
    assert run(main, ["export", str(no_tok), str(tmp_path / "z")]) == 2
    assert "records no tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


def test_bundled_tokenizer_makes_a_movable_folder(tiny_checkpoint, tmp_path, ms_context):
    import shutil
    from codegeex_ms.checkpoint import tokenizer_path
    from codegeex_ms.tokenizer import load
    out = tmp_path / "int8"
    assert main(["quantize", str(tiny_checkpoint), str(out), "--bundle-tokenizer"]) == 0
    moved = shutil.move(str(out), str(tmp_path / "elsewhere"))
    tok = load(tokenizer_path(moved))
    assert tokenizer_path(moved).startswith(str(tmp_path / "elsewhere"))
    assert tok.identity()["sha256"] == load(tokenizer_path(tiny_checkpoint)).identity()["sha256"]
