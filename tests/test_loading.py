"""codegeex_ms.load: every tensor lands in its parameter exactly, with the weights held once (peak RSS)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from codegeex_ms.checkpoint import WEIGHTS_FILE, write_folder
from codegeex_ms.layout import parameter_shapes
from codegeex_ms.safetensors_io import SafetensorsFileError, SafetensorsReader


def _folder(cfg, out, dtype=np.float32, seed=0):
    """A checkpoint folder of random values for ``cfg`` (float weights in ``dtype``, int8 where quantized)."""
    shapes = parameter_shapes(cfg.model, cfg.precision.weight_quant, cfg.precision.embedding_quant)
    rng = np.random.default_rng(seed)
    specs = []
    for name, shape in shapes.items():
        int8 = (cfg.precision.weight_quant == "int8" or cfg.precision.embedding_quant == "int8") and \
            f"{name}_scale" in shapes
        specs.append((name, shape, np.int8 if int8 else dtype))

    def fetch(name):
        shape, dt = shapes[name], dict((n, d) for n, _, d in specs)[name]
        if dt == np.int8:
            return rng.integers(-127, 128, shape).astype(np.int8)
        return (rng.standard_normal(shape) * 0.02).astype(dt)
    return write_folder(out, cfg, specs, fetch)


@pytest.mark.parametrize("variant", ["fp32", "int8", "fp16 file into fp32 parameters"])
def test_every_parameter_equals_the_file(variant, tiny_config, tmp_path, ms_context):
    import codegeex_ms
    cfg = tiny_config
    if variant == "int8":
        cfg = cfg.replace(precision={"weight_quant": "int8", "embedding_quant": "int8"})
    dtype = np.float16 if variant.startswith("fp16") else np.float32
    folder = _folder(cfg.replace(precision={"param_dtype": "float16"}) if dtype == np.float16 else cfg,
                     tmp_path / "ckpt", dtype)
    overrides = {"param_dtype": "float32"} if dtype == np.float16 else None
    model = codegeex_ms.load(folder, precision=overrides)
    reader = SafetensorsReader(folder / WEIGHTS_FILE)
    params = list(model.get_parameters())
    assert sorted(p.name for p in params) == sorted(reader.names)
    for p in params:
        stored = reader.get(p.name)
        got = p.asnumpy()
        assert got.dtype == (np.int8 if stored.dtype == np.int8 else np.float32), p.name
        np.testing.assert_array_equal(got, stored.astype(got.dtype), err_msg=p.name)


def test_reader_returns_arrays_that_own_their_memory(tiny_config, tmp_path):
    folder = _folder(tiny_config, tmp_path / "ckpt")
    reader = SafetensorsReader(folder / WEIGHTS_FILE)
    a = reader.get("word_embeddings.weight")
    assert a.flags.owndata and a.flags.writeable and a.shape == reader.shape("word_embeddings.weight")
    with pytest.raises(KeyError, match="no tensor named nope"):
        reader.get("nope")


def test_a_tensor_whose_bytes_are_cut_is_named(tiny_config, tmp_path):
    folder = _folder(tiny_config, tmp_path / "ckpt")
    path = folder / WEIGHTS_FILE
    reader = SafetensorsReader(path)
    with open(path, "r+b") as f:             # cut the file after the reader has opened it (a file being replaced)
        f.truncate(path.stat().st_size - 100)
    last = max(reader.names, key=lambda n: reader._header[n]["data_offsets"][1])
    with pytest.raises(SafetensorsFileError, match=f"tensor {last} cannot be read: the file ends 100 bytes early"):
        reader.get(last)


def test_peak_memory_holds_the_weights_once(tiny_config, tmp_path):
    """A 160 MB folder (hidden 512, 4 layers): loading adds at most 1.15x the weight bytes to the peak RSS of a fresh
    process (reading through a memory map and then copying used to add 2.1x)."""
    cfg = tiny_config.replace(model={"hidden_size": 512, "num_layers": 4, "num_heads": 8, "ffn_hidden_size": 2048})
    folder = _folder(cfg, tmp_path / "mid")
    size = (folder / WEIGHTS_FILE).stat().st_size
    code = ("import json, resource, sys; import mindspore as ms; ms.set_context(mode=ms.GRAPH_MODE); "
            "import codegeex_ms; from codegeex_ms import model; "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "m = codegeex_ms.load(sys.argv[1]); "
            "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "print(json.dumps({'before': before * 1024, 'after': after * 1024}))")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    added = rss["after"] - rss["before"]
    assert size > 150e6
    assert added <= 1.15 * size, f"loading {size / 1e6:.0f} MB added {added / 1e6:.0f} MB to the peak RSS"


def test_load_for_inference_opens_a_checkpoint_or_names_what_is_wrong(tiny_checkpoint, shared_dir, tmp_path):
    import shutil
    from codegeex_ms.checkpoint import CheckpointError
    from codegeex_ms.loading import load_for_inference
    loaded = load_for_inference(tiny_checkpoint, precision={"weight_quant": "none"})
    assert loaded.fixed_batch_size is None and loaded.model is not None and loaded.folder == tiny_checkpoint
    assert loaded.context == loaded.model.config.model.max_position_embeddings
    assert loaded.tokenizer.encode("def f():") and loaded.tokenizer.eos_id == loaded.model.config.model.eod_token_id
    # without tokenizer.json: named, with the fix; an explicit tokenizer works
    bare = tmp_path / "bare"
    shutil.copytree(tiny_checkpoint, bare)
    (bare / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"bare records no tokenizer \(tokenizer.json\); pass --tokenizer DIR"):
        load_for_inference(bare)
    assert load_for_inference(bare, tokenizer=shared_dir / "tokenizer" / "codegeex").model is not None
    with pytest.raises(CheckpointError, match="does not exist"):
        load_for_inference(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="exactly one"):
        load_for_inference(tiny_checkpoint, tiny_checkpoint)
    with pytest.raises(CheckpointError, match="precision overrides apply to checkpoints"):
        load_for_inference(mindir=tmp_path, precision={"compute_dtype": "float16"})
