"""The Ascend cluster layouts compiled on this CPU machine (MindSpore DryRun with generated Ascend stand-ins).

Each compile runs in a child process (``codegeex_ms.dryrun.run``) with device target Ascend, ``MS_SIMULATION_LEVEL=0``,
``RANK_SIZE`` and ``RANK_ID``, through the same ``init_distributed`` and ``build_train_step`` as train.py."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codegeex_ms import checkpoint, dryrun, reshard
from codegeex_ms.config import apply_overrides, resolve_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the stand-ins are ELF libraries")


def tiny(*overrides: str):
    return apply_overrides(resolve_config("codegeex_tiny"), ["train.micro_batch_size=4", *overrides])


@pytest.fixture(scope="module")
def standins():
    from codegeex_ms.ascend_standins import ensure_standins
    return ensure_standins()


def compile_ranks(cfg, world: int, ranks, out: Path, save: bool = False) -> dict[int, dict]:
    return {r: dryrun.run(cfg, world, r, out, save=save) for r in ranks}


def expected_rank_shape(name: str, shape: tuple, cfg, opt_shard: int) -> tuple:
    """The Megatron slice of the project's layout (reshard.tensor_map), then dim 0 split by the optimizer shard."""
    mp = cfg.parallel.model_parallel
    tmap = reshard.tensor_map(name, len(shape), cfg)
    sliced = [s // mp if m == 0 else s for s, m in zip(shape, tmap)]
    if opt_shard > 1 and sliced:
        sliced[0] //= opt_shard
    return tuple(sliced)


def test_standins_come_from_the_wheel(standins):
    from codegeex_ms.ascend_standins import CORE, LIBRARY_DIR, analyse
    analysis = analyse()
    assert {"libascendcl.so", "libge_runner.so", "libhccl.so"} <= set(analysis.missing_sonames)
    assert len(analysis.functions) > 1000 and "aclrtMalloc" in analysis.functions
    symbols = subprocess.run(["readelf", "-W", "--dyn-syms", str(standins / LIBRARY_DIR / CORE)], capture_output=True,
                             text=True, check=True).stdout
    assert " aclrtMalloc" in symbols and " aclrtGetSocName" in symbols
    # an empty stand-in depends on the one that defines everything
    needed = subprocess.run(["readelf", "-d", str(standins / LIBRARY_DIR / "libge_runner.so")], capture_output=True,
                            text=True, check=True).stdout
    assert f"[{CORE}]" in needed


@pytest.mark.parametrize("overrides, world, rank, message", [
    (["parallel.model_parallel=3"], 3, 0, "model.num_heads (4) is not divisible by parallel.model_parallel (3)"),
    (["parallel.data_parallel=2", "parallel.model_parallel=2"], 8, 0,
     "data_parallel (2) x model_parallel (2) x pipeline_stages (1) = 4, but 8 devices are available"),
    (["parallel.model_parallel=2"], 2, 2, "--rank 2 is not a rank of a 2-device job (0..1)"),
    (["parallel.pipeline_stages=2", "parallel.micro_batches=1"], 2, 0,
     "parallel.micro_batches (1) must be >= parallel.pipeline_stages (2)"),
    (["parallel.pipeline_stages=2", "parallel.micro_batches=3"], 2, 0,
     "train.micro_batch_size (4) is not divisible by parallel.micro_batches (3)"),
])
def test_bad_layouts_fail_before_compiling(overrides, world, rank, message):
    argv = [sys.executable, "-m", "codegeex_ms.dryrun", "--config", "codegeex_tiny", "--world", str(world),
            "--rank", str(rank), "--set", "train.micro_batch_size=4"] + [x for o in overrides for x in ("--set", o)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr[-1000:]
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith("error:") and message in first and "Traceback" not in result.stderr


def test_dp2_mp2_optimizer_shard_agrees_with_the_projects_layout(standins, tmp_path):
    """Two ranks of dp 2 x mp 2 with optimizer sharding and a vocabulary-parallel embedding: MindSpore's strategy
    file has the project's tensor map for every weight and moment, and each rank's shapes are that slice split
    by the optimizer shard the file records."""
    import mindspore as ms
    cfg = tiny("parallel.data_parallel=2", "parallel.model_parallel=2", "parallel.optimizer_shard=true",
               "parallel.vocab_emb_dp=false")
    results = compile_ranks(cfg, 4, [0, 3], tmp_path)
    for rank, result in results.items():
        layouts = ms.parallel.build_searched_strategy(result["strategy_file"])
        sharded = 0
        for row in result["parameters"]:
            name = row["name"]
            if name not in layouts or name in ("scale_value", "counter", "global_step"):
                assert name in ("global_step", "scale_value", "counter"), name
                continue
            layout = layouts[name]
            assert list(layout.dev_matrix[0].dim) == [2, 2]
            assert list(layout.tensor_map[0].dim) == reshard.tensor_map(name, len(row["global_shape"]), cfg), name
            # opt_weight_shard_size -1 means "over all replicas of the slice"; 0 means not sharded
            replicas = 4 // math.prod([2 for m in layout.tensor_map[0].dim if m != -1])
            shard = {-1: replicas, 0: 1}.get(layout.opt_weight_shard_size, layout.opt_weight_shard_size)
            sharded += shard > 1
            assert tuple(row["rank_shape"]) == expected_rank_shape(name, tuple(row["global_shape"]), cfg, shard), name
        assert sharded >= 20, sharded          # the big weights and their moments are sharded
        assert results[rank]["compile_s"] > 0
    word = next(r for r in results[0]["parameters"] if r["name"] == "word_embeddings.weight")
    assert word["rank_shape"] == [52224 // 4, 64]      # vocabulary over mp 2, optimizer shard over dp 2


def test_dp1_mp4_rank_files_equal_reshard_split_of_their_merge(standins, tmp_path):
    """All four ranks of mp 4 save their (sliced) initial weights in DryRun. Merging them with the compiler's
    strategy file and splitting the merge with the project's own layout gives back every rank's file bit for bit.
    (The merge is not the single-device initial model: under semi_auto_parallel every slice is drawn on its own.)"""
    import mindspore as ms
    cfg = tiny("parallel.model_parallel=4", "parallel.vocab_emb_dp=false")
    results = compile_ranks(cfg, 4, range(4), tmp_path / "dry", save=True)
    step = tmp_path / "step"
    for r, result in results.items():
        target = reshard.rank_file(step, r)
        target.parent.mkdir(parents=True)
        Path(result["checkpoint_file"]).rename(target)
    Path(results[0]["strategy_file"]).replace(step / "strategy.ckpt")
    cfg.save(step / checkpoint.CONFIG_FILE)
    reshard.merge(step, tmp_path / "merged", log=lambda *a: None)
    reshard.split(tmp_path / "merged", tmp_path / "split", data_parallel=1, model_parallel=4, vocab_parallel=True,
                  log=lambda *a: None)
    for r in range(4):
        compiled = ms.load_checkpoint(str(reshard.rank_file(step, r)))
        resplit = ms.load_checkpoint(str(reshard.rank_file(tmp_path / "split", r)))
        assert set(compiled) == set(resplit)
        for name, tensor in compiled.items():
            np.testing.assert_array_equal(tensor.asnumpy(), resplit[name].asnumpy(), err_msg=f"rank {r} {name}")
        rows = {row["name"]: row for row in results[r]["parameters"]}
        assert tuple(rows["layers.0.mlp.dense_h_to_4h.weight"]["rank_shape"]) == (64, 64)
        assert tuple(rows["layers.0.attention.dense.weight"]["rank_shape"]) == (64, 16)


@pytest.mark.parametrize("layout, world", [
    (["parallel.data_parallel=2", "parallel.pipeline_stages=2"], 4),
    (["parallel.model_parallel=2", "parallel.pipeline_stages=2", "parallel.vocab_emb_dp=false"], 4),
])
def test_pipeline_stages_compile_one_rank_per_stage(standins, tmp_path, layout, world):
    """Pipeline stages with 4 micro-batches: each stage's rank compiles, holds exactly its stage's layers (the
    embeddings on the first, the final LayerNorm, top query layer and head on the last), and the rank files of one
    replica of both stages merge into the full model."""
    cfg = tiny("model.num_layers=3", "parallel.micro_batches=4", *layout)
    per_stage = world // 2
    results = compile_ranks(cfg, world, range(world), tmp_path / "dry", save=True)
    held = {r: {row["name"] for row in res["parameters"] if row["held"] and row["kind"] == "weight"}
            for r, res in results.items()}
    first, last = held[0], held[per_stage]
    assert {"word_embeddings.weight", "position_embeddings.weight", "layers.0.attention.query.weight",
            "layers.1.mlp.dense_4h_to_h.weight"} <= first
    assert {"final_layernorm.weight", "top_query_embeddings.weight", "top_query_layer.attention.query.weight",
            "layers.2.attention.key.weight"} <= last
    assert not first & last
    assert first | last == {row["name"] for row in results[0]["parameters"] if row["kind"] == "weight"}
    for r, res in results.items():
        rep = dryrun.report(cfg, res, 32)
        assert rep["memory_estimate"]["fits"]
        names = [i["name"] for i in rep["memory_estimate"]["items"]]
        assert any(n.startswith("pipeline gradient accumulators") for n in names)
        assert any(n.startswith("logits") for n in names) == (r >= per_stage)
    # the rank files of both stages, with the stages' strategy files merged, give the whole model back
    step = tmp_path / "step"
    for r, res in results.items():
        target = reshard.rank_file(step, r)
        target.parent.mkdir(parents=True)
        Path(res["checkpoint_file"]).rename(target)
    reshard.merge_pipeline_strategies([Path(results[r]["strategy_file"]) for r in range(world)],
                                      step / "strategy.ckpt")
    cfg.save(step / checkpoint.CONFIG_FILE)
    reshard.merge(step, tmp_path / "merged", log=lambda *a: None)
    import mindspore as ms
    from codegeex_ms.safetensors_io import SafetensorsReader
    merged = SafetensorsReader(tmp_path / "merged" / checkpoint.WEIGHTS_FILE)
    for r, name in ((0, "layers.1.mlp.dense_4h_to_h.bias"), (per_stage, "top_query_layer.attention.dense.bias")):
        np.testing.assert_array_equal(merged.get(name), ms.load_checkpoint(str(reshard.rank_file(step,
                                                                                                 r)))[name].asnumpy())


def test_pipeline_with_model_parallel_and_optimizer_sharding_compiles(standins, tmp_path):
    """dp 2 x mp 2 x pp 2 with optimizer sharding, a vocabulary-parallel embedding and recompute (the 13B recipe's
    switches): a rank of each stage compiles, and each holds only its stage's weights, sliced."""
    cfg = tiny("model.num_layers=3", "parallel.data_parallel=2", "parallel.model_parallel=2",
               "parallel.pipeline_stages=2", "parallel.micro_batches=4", "parallel.optimizer_shard=true",
               "parallel.vocab_emb_dp=false", "parallel.recompute=true")
    results = compile_ranks(cfg, 8, [1, 6], tmp_path)
    held = {r: {row["name"]: row for row in res["parameters"] if row["held"] and row["kind"] == "weight"}
            for r, res in results.items()}
    assert "word_embeddings.weight" in held[1] and "word_embeddings.weight" not in held[6]
    assert "top_query_layer.mlp.dense_h_to_4h.weight" in held[6] and not set(held[1]) & set(held[6])
    query = held[1]["layers.0.attention.query.weight"]
    assert query["global_shape"] == [64, 64] and query["rank_shape"][0] <= 32      # mp 2 (and maybe the shard)


def test_cli_prints_the_report_and_writes_json(standins, tmp_path):
    out = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "codegeex_ms.dryrun", "--config", "codegeex_tiny", "--world", "2",
                             "--rank", "1", "--set", "parallel.model_parallel=2", "--out", str(tmp_path / "o"),
                             "--json", str(out), "--device-memory-gib", "0.001"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "compiled in MindSpore's DryRun; not run on Ascend hardware" in result.stdout
    assert "DOES NOT FIT" in result.stdout                  # 1 MiB of device memory
    report = json.loads(out.read_text())
    assert report["rank"] == 1 and report["world"] == 2 and not report["memory_estimate"]["fits"]
    query = next(r for r in report["parameters"] if r["name"] == "layers.0.attention.query.weight")
    assert query["global_shape"] == [64, 64] and query["rank_shape"] == [32, 64] and query["bytes"] == 32 * 64 * 4
    assert Path(report["strategy_file"]).is_file()


@pytest.mark.parametrize("compute, cells", [("float16", 19), ("bfloat16", 19), ("float32", 0)])
def test_int8_generation_compiles_with_ascends_weight_quant_matmul(standins, tmp_path, compute, cells):
    """The inference engine of an int8 checkpoint (6 Linears x 3 layers + the head with the int8 embedding) on
    Ascend: WeightQuantBatchMatmul where the compute is float16/bfloat16 (the op takes no float32 activations), the
    cast-then-matmul path with float32 compute. DryRun type- and shape-checks the op (a float32 scale with float16
    activations, or a wrong inner dimension, fails the compile)."""
    cfg = tiny("precision.weight_quant=int8", "precision.embedding_quant=int8", f"precision.compute_dtype={compute}",
               "precision.param_dtype=float16" if compute != "bfloat16" else "precision.param_dtype=bfloat16")
    report = dryrun.generation_report(dryrun.run(cfg, 1, 0, tmp_path, generation=(2, 128)), 32.0)
    assert len(report["weight_quant_batch_matmul_cells"]) == cells
    if cells:
        assert report["weight_quant_batch_matmul_cells"][-1] == "head"
    assert report["calls"] == [[1, 16], [2, 1]]              # the one-row prefill engine, the batch's decode step
    kv = next(r for r in report["parameters"] if r["name"] == "kv_cache.0.key")
    assert kv["global_shape"] == [2, 4, 128, 16]
    prefill_kv = next(r for r in report["parameters"] if r["name"] == "prefill_cache.0.key")
    assert prefill_kv["global_shape"] == [1, 4, 128, 16] and prefill_kv["kind"] == "kv cache"
    weights = {r["name"]: r for r in report["parameters"]}
    assert weights["layers.0.mlp.dense_h_to_4h.weight"]["dtype"] == "Int8"


def test_generate_cli_reports_one_device_and_refuses_a_world(standins, tmp_path):
    argv = [sys.executable, "-m", "codegeex_ms.dryrun", "--config", "codegeex_tiny", "--generate",
            "--set", "precision.weight_quant=int8", "--set", "precision.compute_dtype=float16"]
    result = subprocess.run(argv + ["--json", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "18 cells use WeightQuantBatchMatmul" in result.stdout and "fits" in result.stdout
    refused = subprocess.run(argv + ["--world", "2"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--generate compiles the inference engine on one device" in refused.stderr
    too_long = subprocess.run(argv + ["--cache", "4096"], capture_output=True, text=True, timeout=60)
    assert too_long.returncode == 2 and "exceeds the model's 256 positions" in too_long.stderr
