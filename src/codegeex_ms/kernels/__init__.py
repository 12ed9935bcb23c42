"""CPU kernels run inside MindSpore graphs through ``ops.Custom(func_type="aot")``: the int8/float32 Linears
(``linear.cc``), the whole transformer stack for a decode step or prefill chunk (``decode_stack.cc``), the sampler
(``sampler.cc``) and a decode step's float head read through an int8 copy first (``screened_head.cc``).

MindSpore (2.9 and 2.10, checked) has no CPU int8 matmul (int8 x int8 wraps mod 256, fp32 x int8 is a
TypeError, the quantized matmul ops are Ascend-only), so the weight-only int8 Linear used to cast its weight to
float32 for every call: more bytes per token than the fp32 model. ``linear_int8`` reads the int8 weight and
dequantises in registers.

The C++ sources ship in the package and is compiled with g++ -O3 on first use into a per-user cache keyed by the
sources' hash and this CPU's vector features (``~/.cache/codegeex-ms/kernels/``); MindSpore's own build of a
``.cc`` passes no -O flag. Without g++ (or if the build fails) ``library()`` returns None after one warning and
the model keeps its MindSpore-only path. ``CODEGEEX_KERNELS=0`` switches the kernels off.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import warnings
from functools import lru_cache
from pathlib import Path

SOURCES = tuple(Path(__file__).with_name(name)
                for name in ("linear.cc", "decode_stack.cc", "sampler.cc", "screened_head.cc", "threads.cc"))
HEADERS = tuple(Path(__file__).with_name(name) for name in ("linear.h", "threads.h"))
PATHS = ("avx512", "avx2", "portable")
FEATURES = ("avx512f", "avx512bw", "avx512_vnni", "avx2", "fma", "f16c")


_disabled = 0


@contextlib.contextmanager
def disabled():
    """Build models without the custom kernels inside this block (MindIR export: an exported graph must not name
    a shared library of this machine's cache)."""
    global _disabled
    _disabled += 1
    try:
        yield
    finally:
        _disabled -= 1


def enabled() -> bool:
    """Whether models built now use the kernels: CPU device, not switched off, and the library builds."""
    import mindspore as ms
    return not _disabled and ms.get_context("device_target") == "CPU" and library() is not None


def cpu_features() -> tuple[str, ...]:
    try:
        flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    except OSError:
        flags = []
    return tuple(f for f in FEATURES if f in flags)


def best_path() -> str:
    """The fastest path this CPU runs (the one the ``_auto`` entry points take)."""
    f = set(cpu_features())
    return "avx512" if {"avx512f", "avx512bw"} <= f else "avx2" if {"avx2", "fma", "f16c"} <= f else "portable"


def has_vnni() -> bool:
    """Whether the int8-activation kernel (``w8a8_linear_op``) has its fast path here (AVX-512 VNNI)."""
    return {"avx512f", "avx512bw", "avx512_vnni"} <= set(cpu_features())


W8A8_PATHS = ("vnni", "portable")


def supported_paths() -> list[str]:
    order = PATHS[PATHS.index(best_path()):]
    return list(order)


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    source = b"".join(p.read_bytes() for p in SOURCES + HEADERS)
    key = hashlib.sha256(source + " ".join(cpu_features()).encode()).hexdigest()[:16]
    return base / "codegeex-ms" / "kernels" / key


@lru_cache(maxsize=1)
def library() -> Path | None:
    """The compiled kernel library (built on first use), or None with one warning when it cannot be built."""
    if os.environ.get("CODEGEEX_KERNELS", "1") == "0":
        return None
    target = cache_dir() / "libcodegeex_linear.so"
    if target.is_file():
        return target
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        warnings.warn("codegeex_ms.kernels: g++ not found, so int8 Linears run on MindSpore's cast-then-matmul path "
                      "(slower); install g++ to build the CPU kernels", RuntimeWarning, stacklevel=2)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    result = subprocess.run([compiler, "-O3", "-std=c++17", "-shared", "-fPIC", "-pthread",
                             *(str(p) for p in SOURCES), "-o", str(tmp)], capture_output=True, text=True)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        names = ", ".join(p.name for p in SOURCES)
        warnings.warn(f"codegeex_ms.kernels: building {names} failed, so int8 Linears run on MindSpore's "
                      f"cast-then-matmul path: {result.stderr[-500:]}", RuntimeWarning, stacklevel=2)
        return None
    os.replace(tmp, target)
    return target


def _custom(function: str):
    import mindspore as ms
    from mindspore import ops
    lib = library()
    if lib is None:
        return None
    return ops.Custom(f"{lib}:{function}", out_shape=lambda x, w, *rest: (x[0], w[0]),
                      out_dtype=lambda *dtypes: ms.float32, func_type="aot")


def int8_linear_op(path: str = "auto", gelu: bool = False):
    """``ops.Custom``: (x [M, K] float32, w [N, K] int8, scale [N] float32[, bias [N] float32]) ->
    x @ (w * scale)ᵀ (+ bias) [M, N] float32, then ``y * sigmoid(1.702 y)`` with ``gelu``; None when the kernels are
    not available. ``path``: "auto" or one of PATHS (tests)."""
    return _custom(f"linear_int8{'_gelu' if gelu else ''}_{path}")


def f32_linear_op(path: str = "auto", gelu: bool = False):
    """``ops.Custom``: (x [M, K] float32, w [N, K] float32[, bias [N] float32]) -> x @ wᵀ (+ bias) [M, N] float32,
    then ``y * sigmoid(1.702 y)`` with ``gelu``; or None."""
    return _custom(f"linear_f32{'_gelu' if gelu else ''}_{path}")


def f16_linear_op(path: str = "auto"):
    """``ops.Custom``: (x [M, K] float32, w [N, K] float16) -> x @ wᵀ [M, N] float32, the float16 weights converted
    in registers (the tied head of a checkpoint with a float16 embedding, read at half the float32 bytes); or
    None."""
    return _custom(f"linear_f16_{path}")


def w8a8_linear_op(path: str = "auto", gelu: bool = False):
    """``ops.Custom``: (x [M, K] float32, w [N, K] int8, scale [N] float32[, bias [N] float32]) -> y [M, N] float32
    with int8 activations: each row of x quantised symmetric per row (``sx = max|x| / 127``, ``q = rint(x / sx)``),
    then ``y = float(q @ wᵀ) * sx * scale`` (+ bias, then GELU with ``gelu``); integer sums, so exact to the
    quantised operands. Approximate against the float model by the activation's rounding, as torch's
    ``quantize_dynamic`` is. None when the kernels are not available. ``path``: "auto" or one of W8A8_PATHS."""
    return _custom(f"linear_w8a8{'_gelu' if gelu else ''}_{path}")


def quantized_linear_op(int8_activations: bool, gelu: bool = False):
    """The op an int8 Linear uses: ``w8a8_linear_op`` when int8 activations are asked for and this CPU has AVX-512
    VNNI (elsewhere one warning, and the exact weight-only kernel instead), else ``int8_linear_op``."""
    if int8_activations:
        if has_vnni():
            return w8a8_linear_op(gelu=gelu)
        warnings.warn("codegeex_ms.kernels: int8 activations need AVX-512 VNNI, which this CPU lacks; the int8 "
                      "Linears keep float32 activations (weight-only int8)", RuntimeWarning, stacklevel=2)
    return int8_linear_op(gelu=gelu)


def decode_stack_op(int8: bool):
    """``ops.Custom``: the transformer stack (every layer, the final LayerNorm, the top query layer) for a decode
    step or a prefill chunk (see ``decode_stack.cc`` for the inputs), writing each token's key and value into the
    cache Parameters it is given (marked as a memory side effect, so MindSpore orders it like its own in-place
    ops). None when the kernels are not available."""
    import mindspore as ms
    from mindspore import ops
    lib = library()
    if lib is None:
        return None
    op = ops.Custom(f"{lib}:decode_stack_{'int8' if int8 else 'f32'}", out_shape=lambda x, *rest: x,
                    out_dtype=lambda *dtypes: ms.float32, func_type="aot")
    op.add_prim_attr("side_effect_mem", True)
    return op


def screened_head_op():
    """``ops.Custom``: (x [b, h] float32, screen [V', h] int8, screen_scale [V'] float32, table [V', h] float32 or
    float16, vocab [1] int32, top_k [b] int32, noise [b, K] float32) -> logits [b, V'] float32: the logit, as the
    float32 or float16 head kernel computes it, of every row that can be among a row's ``min(top_k, K)`` best,
    found through the int8 ``screen`` (``checkpoint.quantize_rows`` of ``table``) and a bound on its error; -inf
    elsewhere (see ``screened_head.cc``). None when the kernels are not available."""
    import mindspore as ms
    from mindspore import ops
    lib = library()
    if lib is None:
        return None
    return ops.Custom(f"{lib}:screened_head", out_shape=lambda x, screen, *rest: (x[0], screen[0]),
                      out_dtype=lambda *dtypes: ms.float32, func_type="aot")


def sampler_op():
    """``ops.Custom``: (logits [b, V'] float32, vocab [1] int32, noise [b, K] float32, temperature [b] float32,
    top_k [b] int32, top_p [b] float32) -> token ids [b] int32: ``generation_graphs.Sampler``'s maths in one call
    (see ``sampler.cc``); None when the kernels are not available."""
    import mindspore as ms
    from mindspore import ops
    lib = library()
    if lib is None:
        return None
    return ops.Custom(f"{lib}:sample_rows", out_shape=lambda logits, *rest: (logits[0],),
                      out_dtype=lambda *dtypes: ms.int32, func_type="aot")
