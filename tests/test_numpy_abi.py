"""MindSpore's numpy calls in a fresh interpreter, the way a user's first script makes them.

MindSpore 2.10.0 declares ``numpy>=1.25`` but its C++ is built against NumPy 1.x: under numpy 2 the first Tensor
method call of a process raises SystemError ("returned a result with an exception set") and a numpy scalar as an
op argument raises TypeError, while numpy 1.26 behaves as MindSpore 2.9 did. That is why setup.cfg pins
``numpy<2``. Run this file under numpy 2 (``pip install 'numpy>=2' && pytest tests/test_numpy_abi.py``) to learn
whether a new MindSpore wheel is built against NumPy 2, before lifting the pin.
"""
import subprocess
import sys

PROBE = r"""
import numpy as np
import mindspore as ms
x = ms.Tensor(np.arange(6, dtype=np.float32))
print("reshape", x.reshape(3, 2).shape)                    # the first Tensor method call of the process
print("add", (x + np.float32(2)).asnumpy().tolist())        # a numpy scalar as an op argument
print("scalar", ms.Tensor(np.int64(5)).asnumpy().item())
"""


def test_numpy_calls_work_in_a_fresh_interpreter():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "reshape (3, 2)" in proc.stdout, output[-3000:]
    assert "add [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]" in proc.stdout, output[-3000:]
    assert "scalar 5" in proc.stdout, output[-3000:]
    # numpy's own warning when a module built against NumPy 1.x is loaded under NumPy 2 ("may crash")
    assert "compiled using NumPy 1.x" not in output and "Numpy init failed" not in output, output[-3000:]
