"""Converters: full 13B name/shape maps without allocating, round trips on tiny random weights, clear errors."""
from __future__ import annotations

import re

import numpy as np
import pytest

from codegeex_ms.config import load_config, shipped_configs
from codegeex_ms.convert import TensorSource, check_mapping, infer_config, main, mindspore_rules, open_source
from codegeex_ms.cli import run
from codegeex_ms.layout import count_parameters, parameter_shapes
from codegeex_ms.safetensors_io import SafetensorsReader
from reference_codegeex import fp32, random_reference_model, reference_model_module, torch


class ShapeOnlySource(TensorSource):
    """Names and shapes only: reading a tensor is a test failure (the full-size checks must not allocate)."""

    def __init__(self, kind, shapes):
        self.kind, self._shapes, self.names, self.skipped = kind, dict(shapes), list(shapes), []

    def shape(self, name):
        return self._shapes[name]

    def get(self, name):
        raise AssertionError(f"full-size mapping check read tensor {name}")


@pytest.fixture(scope="module")
def release_13b_shapes():
    """Names/shapes of the real 13B release layout, from the reference model built on the meta device."""
    module = reference_model_module()
    with torch.device("meta"):
        model = module.CodeGeeXModel(5120, 39, 40, 52224, 2048)
    tree = model.state_dict_for_save_checkpoint()["language_model"]

    def flatten(d, prefix=""):
        for k, v in d.items():
            yield from (flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", tuple(v.shape))])
    return dict(flatten(tree))


def test_13b_release_maps_onto_ours_without_allocating(release_13b_shapes):
    cfg = load_config(shipped_configs()["codegeex_13b"])
    assert len(release_13b_shapes) == 645
    assert sum(int(np.prod(s)) for s in release_13b_shapes.values()) == count_parameters(cfg.model) == 12_873_943_040
    source = ShapeOnlySource("torch", release_13b_shapes)
    rules = check_mapping(source, cfg)
    assert rules["word_embeddings.weight"].source == "embedding.word_embeddings.weight"
    assert rules["top_query_layer.attention.query.weight"].source == "transformer.topQueryLayer.attention.query.weight"
    assert rules["layers.38.mlp.dense_h_to_4h.weight"].source == "transformer.layers.38.mlp.dense_h_to_4h.weight"
    assert infer_config(source)[0] == "codegeex_13b"


def test_13b_fused_qkv_variant_maps_without_allocating(release_13b_shapes):
    """The get_ckpt_qkv.py layout: query_key_value [15360, 5120] per layer, key_value [10240, 5120] on top."""
    cfg = load_config(shipped_configs()["codegeex_13b"])
    fused = {}
    for name, shape in release_13b_shapes.items():
        if ".layers." in name and any(f".attention.{w}." in name for w in ("query", "key", "value")):
            fused[re.sub(r"\.attention\.(query|key|value)\.", ".attention.query_key_value.", name)] = \
                (3 * shape[0],) + shape[1:]
        elif "topQueryLayer.attention.key." in name or "topQueryLayer.attention.value." in name:
            fused[re.sub(r"\.attention\.(key|value)\.", ".attention.key_value.", name)] = (2 * shape[0],) + shape[1:]
        else:
            fused[name] = shape
    assert fused["transformer.layers.0.attention.query_key_value.weight"] == (15360, 5120)
    assert fused["transformer.topQueryLayer.attention.key_value.weight"] == (10240, 5120)
    rules = check_mapping(ShapeOnlySource("torch", fused), cfg)
    assert rules["layers.3.attention.value.bias"].rows == (10240, 15360)
    assert rules["top_query_layer.attention.key.weight"].rows == (0, 5120)
    assert rules["top_query_layer.attention.query.weight"].rows is None


def test_13b_mindspore_names_and_transposes():
    """Section 1.8 of the fact sheet: names, and which weights are stored [in, out]."""
    cfg = load_config(shipped_configs()["codegeex_13b"])
    rules = mindspore_rules(cfg)
    assert len(rules) == 645
    shapes = {}
    for ours, shape in parameter_shapes(cfg.model).items():
        rule = rules[ours]
        shapes[rule.source] = tuple(reversed(shape)) if rule.transpose else shape
    assert shapes["backbone.embedding.word_embedding.embedding_table"] == (52224, 5120)
    assert shapes["backbone.blocks.0.attention.dense1.weight"] == (5120, 5120)
    assert rules["layers.0.attention.query.weight"].transpose is False
    assert shapes["backbone.blocks.38.output.mapping.weight"] == (5120, 20480)
    assert shapes["backbone.blocks.38.output.projection.weight"] == (20480, 5120)
    assert rules["layers.5.attention.dense.weight"].transpose is True
    assert shapes["backbone.top_query_layer.layernorm2.gamma"] == (5120,)
    assert shapes["backbone.layernorm.beta"] == (5120,)
    assert shapes["backbone.top_query_embedding.embedding_table"] == (2048, 5120)
    assert infer_config(ShapeOnlySource("mindspore", shapes))[0] == "codegeex_13b"


# ---------------------------------------------------------------------------------------------------------
# Tiny round trips on values.

@pytest.fixture(scope="module")
def tiny_release(tiny_config, tmp_path_factory):
    reference = random_reference_model(tiny_config.model, seed=3)
    folder = tmp_path_factory.mktemp("release")
    path = folder / "tiny.pt"
    state = reference.state_dict_for_save_checkpoint()
    torch.save({"module": state}, path)
    flat = {k: v.numpy().copy() for k, v in reference.state_dict().items()}
    return path, flat


@pytest.fixture(scope="module")
def tiny_ours(tiny_release, tmp_path_factory):
    out = tmp_path_factory.mktemp("ours") / "ckpt"
    assert main([str(tiny_release[0]), str(out), "--config", "codegeex_tiny", "--tokenizer", "/some/tokenizer"]) == 0
    return out


def _weights(folder):
    reader = SafetensorsReader(folder / "model.safetensors")
    return {n: reader.get(n) for n in reader.names}


def test_torch_to_ours_values(tiny_release, tiny_ours):
    _, flat = tiny_release
    ours = _weights(tiny_ours)
    np.testing.assert_array_equal(ours["word_embeddings.weight"],
                                  flat["language_model.embedding.word_embeddings.weight"])
    np.testing.assert_array_equal(ours["top_query_layer.mlp.dense_4h_to_h.weight"],
                                  flat["language_model.transformer.topQueryLayer.mlp.dense_4h_to_h.weight"])
    np.testing.assert_array_equal(ours["layers.1.attention.key.bias"],
                                  flat["language_model.transformer.layers.1.attention.key.bias"])
    assert (tiny_ours / "config.yaml").is_file()
    assert "/some/tokenizer" in (tiny_ours / "tokenizer.json").read_text()


def test_fused_qkv_gives_the_same_weights(tiny_release, tiny_ours, tmp_path):
    """The fused layout written like get_ckpt_qkv.py converts to exactly the same weights."""
    sd = torch.load(tiny_release[0])
    t = sd["module"]["language_model"]["transformer"]
    for i in range(2):
        for kind in ("weight", "bias"):
            parts = [t.pop(f"layers.{i}.attention.{w}.{kind}") for w in ("query", "key", "value")]
            t[f"layers.{i}.attention.query_key_value.{kind}"] = torch.cat(parts, dim=0)
    for kind in ("weight", "bias"):
        parts = [t.pop(f"topQueryLayer.attention.{w}.{kind}") for w in ("key", "value")]
        t[f"topQueryLayer.attention.key_value.{kind}"] = torch.cat(parts, dim=0)
    torch.save(sd, tmp_path / "fused.pt")
    assert main([str(tmp_path / "fused.pt"), str(tmp_path / "out"), "--config", "codegeex_tiny"]) == 0
    a, b = _weights(tiny_ours), _weights(tmp_path / "out")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_ours_to_torch_loads_into_the_reference(tiny_release, tiny_ours, tmp_path, tiny_config):
    assert main([str(tiny_ours), str(tmp_path / "back.pt"), "--to", "torch"]) == 0
    back = torch.load(tmp_path / "back.pt")
    with fp32():   # the reference stores its position tables in fp16 unless .half() is neutralised
        model = reference_model_module().CodeGeeXModel(64, 2, 4, 52224, 256).float()
    model.load_state_dict(back["module"], strict=True)
    _, flat = tiny_release
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value.float().numpy(), flat[name], err_msg=name)


def test_mindspore_layout_round_trip(tiny_ours, tmp_path, ms_context):
    import mindspore as ms
    ckpt = tmp_path / "code-tiny.ckpt"
    assert main([str(tiny_ours), str(ckpt), "--to", "mindspore"]) == 0
    params = ms.load_checkpoint(str(ckpt))
    ours = _weights(tiny_ours)
    np.testing.assert_array_equal(params["backbone.blocks.1.output.mapping.weight"].asnumpy(),
                                  ours["layers.1.mlp.dense_h_to_4h.weight"].T)
    np.testing.assert_array_equal(params["backbone.top_query_layer.attention.dense1.weight"].asnumpy(),
                                  ours["top_query_layer.attention.query.weight"])
    # A training checkpoint also holds optimizer moments and counters: they are skipped and reported.
    extra = [{"name": n, "data": p} for n, p in params.items()]
    extra += [{"name": "adam_m." + n, "data": ms.Tensor(np.zeros(p.shape, np.float32))} for n, p in params.items()]
    extra += [{"name": "global_step", "data": ms.Tensor(np.array([7], np.int32))}]
    ms.save_checkpoint(extra, str(tmp_path / "train.ckpt"))
    source = open_source(tmp_path / "train.ckpt")
    assert len(source.skipped) == len(params) + 1
    assert main([str(tmp_path / "train.ckpt"), str(tmp_path / "again"), "--config", "codegeex_tiny"]) == 0
    again = _weights(tmp_path / "again")
    for name in ours:
        np.testing.assert_array_equal(again[name], ours[name], err_msg=name)


def test_mindspore_npy_dump_folder(tiny_ours, tmp_path, tiny_config):
    """The original convertion_1p.py writes one {name}.npy per parameter."""
    ours = _weights(tiny_ours)
    dump = tmp_path / "npy"
    dump.mkdir()
    for our_name, rule in mindspore_rules(tiny_config).items():
        np.save(dump / f"{rule.source}.npy", rule.apply(ours[our_name]))
    assert main([str(dump), str(tmp_path / "out"), "--config", "codegeex_tiny", "--dtype", "float16"]) == 0
    out = _weights(tmp_path / "out")
    assert out["layers.0.attention.dense.weight"].dtype == np.float16
    np.testing.assert_array_equal(out["layers.0.attention.dense.weight"],
                                  ours["layers.0.attention.dense.weight"].astype(np.float16))


def test_errors_name_the_parameter(tiny_release, tmp_path, capsys):
    sd = torch.load(tiny_release[0])
    t = sd["module"]["language_model"]["transformer"]
    del t["layers.1.mlp.dense_4h_to_h.bias"]
    t["layers.0.attention.query.weight"] = torch.zeros(64, 65)
    t["layers.0.attention.rotary.inv_freq"] = torch.zeros(8)
    torch.save(sd, tmp_path / "bad.pt")
    assert run(main, [str(tmp_path / "bad.pt"), str(tmp_path / "out"), "--config", "codegeex_tiny"]) == 2
    err = capsys.readouterr().err
    assert "missing 1 parameter(s): transformer.layers.1.mlp.dense_4h_to_h.bias" in err
    assert "unexpected 1 parameter(s): transformer.layers.0.attention.rotary.inv_freq" in err
    assert "transformer.layers.0.attention.query.weight -> layers.0.attention.query.weight: expected shape (64, 64), " \
           "found (64, 65)" in err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_no_matching_shipped_config_is_explained(tmp_path, capsys):
    model = reference_model_module().CodeGeeXModel(32, 1, 2, 1024, 64)
    torch.save({"module": model.state_dict_for_save_checkpoint()}, tmp_path / "odd.pt")
    assert run(main, [str(tmp_path / "odd.pt"), str(tmp_path / "out")]) == 2
    assert "no shipped config matches" in capsys.readouterr().err


def test_loading_checks_names_and_shapes(tiny_ours, tmp_path, ms_context):
    import shutil

    import codegeex_ms
    from codegeex_ms.checkpoint import CheckpointError
    from codegeex_ms.safetensors_io import write_safetensors
    broken = tmp_path / "broken"
    shutil.copytree(tiny_ours, broken)
    weights = _weights(tiny_ours)
    weights.pop("final_layernorm.bias")
    weights["extra.weight"] = np.zeros(3, np.float32)
    write_safetensors(broken / "model.safetensors", [(n, a.shape, a.dtype) for n, a in weights.items()], weights.get)
    with pytest.raises(CheckpointError, match=r"1 missing parameter\(s\): final_layernorm.bias.*"
                                              r"1 unexpected parameter\(s\): extra.weight"):
        codegeex_ms.load(broken)
    with pytest.raises(CheckpointError, match="config.yaml is missing"):
        codegeex_ms.load(tmp_path)


def test_an_existing_output_is_refused_and_overwrite_replaces_it_whole(tiny_release, tiny_ours, tmp_path, capsys):
    """No conversion mixes with or silently replaces an earlier one: refused, or --overwrite replaces it whole."""
    import shutil
    from codegeex_ms.cli import UsageError
    out = tmp_path / "ckpt"
    shutil.copytree(tiny_ours, out)
    (out / "notes.txt").write_text("kept")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(UsageError, match=f"{out} already exists; pass --overwrite to replace it"):
        main([str(tiny_release[0]), str(out), "--config", "codegeex_tiny", "--dtype", "float16"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    pt = tmp_path / "back.pt"
    pt.write_bytes(b"an earlier export")
    with pytest.raises(UsageError, match="already exists"):
        main([str(out), str(pt), "--to", "torch"])
    assert pt.read_bytes() == b"an earlier export"
    assert main([str(tiny_release[0]), str(out), "--config", "codegeex_tiny", "--dtype", "float16", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "model.safetensors"]      # replaced as a whole
    assert SafetensorsReader(out / "model.safetensors").dtype("word_embeddings.weight") == np.float16
    assert not (tmp_path / "ckpt.tmp").exists()
