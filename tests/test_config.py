"""Config loading and validation: every shipped YAML, the 13B parameter count, clear errors."""
from __future__ import annotations

import pytest

from codegeex_ms.config import ConfigError, ParallelConfig, PrecisionConfig, load_config, shipped_configs
from codegeex_ms.layout import count_parameters


def test_every_shipped_config_loads():
    configs = shipped_configs()
    assert {"codegeex_13b", "codegeex_350m", "codegeex_125m", "codegeex_tiny"} <= set(configs)
    for path in configs.values():
        load_config(path)


def test_13b_matches_the_release():
    cfg = load_config(shipped_configs()["codegeex_13b"])
    m, p = cfg.model, cfg.parallel
    assert (m.hidden_size, m.num_layers, m.num_heads, m.ffn_hidden_size) == (5120, 39, 40, 20480)
    assert (m.vocab_size, m.padded_vocab_size, m.max_position_embeddings) == (50400, 52224, 2048)
    assert count_parameters(m) == 12_873_943_040
    assert (p.model_parallel, p.data_parallel, p.device_num) == (8, 192, 1536)
    assert p.optimizer_shard and p.recompute and not p.vocab_emb_dp
    assert (p.optimizer_shard_size, p.gradient_aggregation_group) == (16, 4)
    assert cfg.precision.compute_dtype == "float16" and cfg.precision.softmax_dtype == "float32"


def test_optimizer_shard_size_is_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"optimizer_shard_size \(16\) needs parallel.optimizer_shard: true"):
        load_config(_write(tmp_path, "parallel: {data_parallel: 32, optimizer_shard_size: 16}\n"))
    with pytest.raises(ConfigError,
                       match=r"optimizer_shard_size \(16\) must be >= 2 and divide parallel.data_parallel \(24\)"):
        load_config(_write(tmp_path,
                           "parallel: {data_parallel: 24, optimizer_shard: true, optimizer_shard_size: 16}\n"))
    with pytest.raises(ConfigError, match=r"gradient_aggregation_group must be >= 1"):
        load_config(_write(tmp_path, "parallel: {gradient_aggregation_group: 0}\n"))


def test_gradient_aggregation_groups_layers(tiny_config, ms_context):
    from codegeex_ms.config import apply_overrides
    from codegeex_ms.model import CodeGeeX
    model = CodeGeeX(apply_overrides(tiny_config, ["parallel.gradient_aggregation_group=2"]))
    fusion = {p.name: p.comm_fusion for p in model.trainable_params()}
    n = tiny_config.model.num_layers
    groups = ([fusion[f"layers.{i}.mlp.dense_h_to_4h.weight"] for i in range(n)]
              + [fusion["top_query_layer.attention.query.weight"]])
    assert groups == [i // 2 + 1 for i in range(n + 1)] and len(set(groups)) > 1


def test_350m_size():
    cfg = load_config(shipped_configs()["codegeex_350m"])
    assert cfg.model.num_layers + 1 == 24 and cfg.model.hidden_size == 1024 and cfg.model.num_heads == 16
    assert 340e6 < count_parameters(cfg.model) < 370e6


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_key_and_file(tmp_path):
    path = _write(tmp_path, "model:\n  hidden_size: 64\n  num_heads: 4\n  hiden_size: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*model\.hiden_size"):
        load_config(path)


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown section.*training"):
        load_config(_write(tmp_path, "training: {lr: 1}\n"))


def test_wrong_type_and_range(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.num_layers must be an integer"):
        load_config(_write(tmp_path, "model: {num_layers: two}\n"))
    with pytest.raises(ConfigError, match=r"model\.hidden_dropout must be in \[0, 1\)"):
        load_config(_write(tmp_path, "model: {hidden_dropout: 1.5}\n"))
    with pytest.raises(ConfigError, match=r"hidden_size \(100\) must be divisible by model\.num_heads \(3\)"):
        load_config(_write(tmp_path, "model: {hidden_size: 100, num_heads: 3}\n"))
    with pytest.raises(ConfigError, match="precision.compute_dtype must be one of"):
        load_config(_write(tmp_path, "precision: {compute_dtype: float8}\n"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_bf16_is_rejected_on_cpu_with_a_clear_message():
    PrecisionConfig(compute_dtype="bfloat16").check_device("Ascend")
    with pytest.raises(ConfigError, match=r"precision\.compute_dtype = bfloat16 cannot run on CPU"):
        PrecisionConfig(compute_dtype="bfloat16").check_device("CPU")


def test_parallel_arithmetic_names_the_numbers():
    cfg = load_config(shipped_configs()["codegeex_13b"])
    cfg.parallel.check(cfg.model, device_num=1536)
    with pytest.raises(ConfigError,
                       match=r"data_parallel \(192\) x model_parallel \(8\) x pipeline_stages \(1\) = 1536, "
                                          r"but 1024 devices"):
        cfg.parallel.check(cfg.model, device_num=1024)
    with pytest.raises(ConfigError,
                       match=r"model\.num_heads \(40\) is not divisible by parallel\.model_parallel \(3\)"):
        ParallelConfig(model_parallel=3).check(cfg.model)
    ParallelConfig(pipeline_stages=3,
                   micro_batches=3).check(cfg.model)   # 39 layers + the top query layer: stages of 14, 13, 13
    with pytest.raises(ConfigError, match=r"= 40 is fewer than parallel\.pipeline_stages \(42\)"):
        ParallelConfig(pipeline_stages=42, micro_batches=42).check(cfg.model)
    with pytest.raises(ConfigError,
                       match=r"padded_vocab_size \(52224\) is not divisible by parallel\.model_parallel \(5\)"):
        ParallelConfig(model_parallel=5, vocab_emb_dp=False).check(cfg.model.__class__(num_heads=40, hidden_size=5120,
                                                                                       ffn_hidden_size=20480))


def test_replace_and_roundtrip(tmp_path):
    cfg = load_config(shipped_configs()["codegeex_tiny"])
    changed = cfg.replace(precision={"compute_dtype": "float16"})
    assert changed.precision.compute_dtype == "float16" and cfg.precision.compute_dtype == "float32"
    changed.save(tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == changed
    with pytest.raises(ConfigError, match="unknown key"):
        cfg.replace(model={"nope": 1})


def test_compiler_switches_are_validated_and_inert_on_cpu(ms_context):
    from codegeex_ms.config import CompileConfig, ConfigError, resolve_config
    from codegeex_ms.parallel import apply_compiler_options
    cfg = resolve_config("codegeex_13b")
    assert cfg.compile.graph_kernel is True and cfg.compile.aoe_tune_mode == ""
    with pytest.raises(ConfigError, match="compile.aoe_tune_mode must be"):
        CompileConfig(aoe_tune_mode="sometimes")
    apply_compiler_options(CompileConfig(graph_kernel=True, aoe_tune_mode="online"), "CPU")   # no effect, no error
    assert not ms_context.get_context("enable_graph_kernel")


def test_checkpoint_config_describes_the_network_and_older_files_still_load(tiny_config, tmp_path):
    import yaml
    from codegeex_ms.config import apply_overrides, load_config
    # a checkpoint folder's config: model and precision only; read back with a one-device layout and a training
    # length the model holds
    cfg = apply_overrides(tiny_config, ["parallel.data_parallel=2", "compile.graph_kernel=true", "train.lr=0.5"])
    cfg.save(tmp_path / "network.yaml", network_only=True)
    assert set(yaml.safe_load((tmp_path / "network.yaml").read_text())) == {"model", "precision"}
    network = load_config(tmp_path / "network.yaml")
    assert network.model == cfg.model and network.precision == cfg.precision
    assert network.parallel.data_parallel == 1 and not network.compile.graph_kernel
    assert network.train.seq_len == min(2048, cfg.model.max_position_embeddings)
    # a run's config keeps everything
    cfg.save(tmp_path / "run.yaml")
    assert load_config(tmp_path / "run.yaml") == cfg
    # the layout of older files: every section, compiler switches under parallel
    old = cfg.to_dict()
    old["parallel"].update(old.pop("compile"))
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    assert load_config(tmp_path / "old.yaml") == cfg


def test_overrides_are_replace_with_the_source_named(tiny_config):
    from codegeex_ms.config import ConfigError, apply_overrides
    assert apply_overrides(tiny_config, ["train.lr=0.25"]) == tiny_config.replace(train={"lr": 0.25})
    with pytest.raises(ConfigError, match=r"^--set: unknown key\(s\) train.fooo"):
        apply_overrides(tiny_config, ["train.fooo=1"])
    with pytest.raises(ConfigError, match=r"^--set: unknown config section 'trian'"):
        apply_overrides(tiny_config, ["trian.lr=1"])
