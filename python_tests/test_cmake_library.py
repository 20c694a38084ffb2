"""CMakeLists.txt builds the same csrc/ into a libtorch library that serving code can load
without Python bindings; it must register exactly the ops that srkd_ext._C registers."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.utils

import srkd_ext  # noqa: F401  (registers the ops of the Python build in this process)

REPO = Path(__file__).resolve().parents[1]

LIST_OPS = "sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith('srkd_ext::'))"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_library_builds_and_loads(tmp_path):
    build = tmp_path / "build"
    env = dict(os.environ, MAX_JOBS="2")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(
        ["cmake", "-S", str(REPO), "-B", str(build), *generator,
         f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"],
        check=True, capture_output=True, text=True, env=env,
    )
    subprocess.run(["cmake", "--build", str(build), "-j", "2"], check=True, capture_output=True,
                   text=True, env=env)
    lib = build / "libsrkd_ext_ops.so"
    assert lib.is_file()
    assert json.loads((build / "compile_commands.json").read_text()), "compile_commands.json is empty"

    # A fresh interpreter that never imports srkd_ext: only the CMake library registers ops there.
    code = (
        "import json, torch\n"
        f"torch.ops.load_library({str(lib)!r})\n"
        "assert torch.ops.srkd_ext.compiled_with_cuda() in (True, False)\n"
        f"print(json.dumps({LIST_OPS}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    expected = eval(LIST_OPS, {"torch": torch})  # the ops registered by srkd_ext._C in this process
    assert loaded == expected
    assert "srkd_ext::compiled_with_cuda" in loaded
