"""Builds srkd_ext._C: the C++ (CPU) kernels always, the CUDA kernels when possible.

Build variables (environment):
  SRKD_CUDA=1|0          force / forbid the CUDA kernels (default: build them when torch is a CUDA
                         build and nvcc is found)
  TORCH_CUDA_ARCH_LIST   GPU architectures (default "8.0;9.0": A100 and H100/H200)
  SRKD_CPU_FLAGS         extra flags for the C++ kernels (default: AVX2+FMA when this CPU has them)
  SRKD_DEBUG=1           -O0 -g, for debugging kernels
  MAX_JOBS               parallel compile jobs (ninja)
  SRKD_NO_EXT=1          install the Python package only (the Makefile then builds in place)
"""

import glob
import os
import shutil
import site
import sys
import sysconfig

from setuptools import setup

# torch locates the CUDA toolkit from CUDA_HOME or from `which nvcc`; where nvcc on PATH is a
# wrapper script (/usr/local/bin/nvcc -> /usr/local/cuda-X/bin/nvcc), that guess is /usr/local and
# linking fails with "cannot find -lcudart". Prefer the conventional toolkit folder then.
if not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")) and os.path.isfile("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print(f"[srkd_ext build] {msg}", file=sys.stderr, flush=True)


def want_cuda():
    flag = os.environ.get("SRKD_CUDA", "").strip()
    has_nvcc = CUDA_HOME is not None and shutil.which(os.path.join(CUDA_HOME, "bin", "nvcc")) is not None
    if flag == "0":
        log("SRKD_CUDA=0: CUDA kernels skipped, building the CPU kernels only.")
        return False
    if flag == "1":
        if torch.version.cuda is None:
            sys.exit("[srkd_ext build] SRKD_CUDA=1 but the installed torch is a CPU-only build "
                     f"({torch.__version__}); install a CUDA build of torch or unset SRKD_CUDA.")
        if not has_nvcc:
            sys.exit("[srkd_ext build] SRKD_CUDA=1 but nvcc was not found; set CUDA_HOME.")
        return True
    if torch.version.cuda is None:
        log(f"torch {torch.__version__} is a CPU-only build: CUDA kernels skipped, "
            "building the CPU kernels only.")
        return False
    if not has_nvcc:
        log("nvcc not found (set CUDA_HOME): CUDA kernels skipped, building the CPU kernels only.")
        return False
    return True


def cpu_flags():
    if "SRKD_CPU_FLAGS" in os.environ:
        return os.environ["SRKD_CPU_FLAGS"].split()
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
    except OSError:
        cpuinfo = ""
    # at::vec picks its AVX2 specialisations from CPU_CAPABILITY_AVX2 (ATen itself compiles
    # one copy per capability and dispatches at run time; an extension built from source on
    # the machine that runs it can simply target that machine).
    if " avx2 " in cpuinfo and " fma " in cpuinfo:
        return ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY_AVX2"]
    return []


def nvidia_pip_includes():
    """Headers of pip-installed NVIDIA libraries (cuBLAS, cuSPARSE, ...) that a CUDA toolkit
    installed without them lacks (site-packages/nvidia/*/include, nvidia/cu13/include)."""
    dirs = []
    for sp in site.getsitepackages() + [sysconfig.get_paths()["purelib"]]:
        dirs += glob.glob(os.path.join(sp, "nvidia", "*", "include"))
    return sorted(set(d for d in dirs if os.path.isdir(d)))


def check_unique_stems(sources):
    stems = {}
    for s in sources:
        stem = os.path.splitext(os.path.basename(s))[0]
        if stem in stems:
            sys.exit(f"[srkd_ext build] {s} and {stems[stem]} share the stem '{stem}': "
                     "their object files would collide; rename one.")
        stems[stem] = s


def extension():
    if os.environ.get("SRKD_NO_EXT") == "1":
        # Used by `make`: install the package metadata once, then build the kernels
        # incrementally with `setup.py build_ext --inplace` (ninja reuses build/).
        log("SRKD_NO_EXT=1: installing the Python package without building the kernels.")
        return None
    debug = os.environ.get("SRKD_DEBUG") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3"]
    cpp_sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/cuda/*.cpp"))
    include_dirs = [os.path.join(ROOT, "csrc")]
    # -Wno-unknown-pragmas: torch's CPU vector headers use `#pragma unroll`, which GCC does not know.
    cxx = opt + cpu_flags() + ["-Wno-unknown-pragmas"]
    if want_cuda():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        log(f"building CUDA kernels for TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']} "
            f"({len(cuda_sources)} .cu files)")
        extra_inc = nvidia_pip_includes()
        if extra_inc:
            log("adding pip NVIDIA headers: " + ", ".join(extra_inc))
        sources = cpp_sources + cuda_sources
        check_unique_stems(sources)
        nvcc = opt + ["-lineinfo", "-Xptxas=-v", "-DSRKD_WITH_CUDA"]
        return CUDAExtension(
            "srkd_ext._C", sources,
            include_dirs=include_dirs + extra_inc,
            extra_compile_args={"cxx": cxx + ["-DSRKD_WITH_CUDA"], "nvcc": nvcc},
            py_limited_api=True,
        )
    check_unique_stems(cpp_sources)
    return CppExtension(
        "srkd_ext._C", cpp_sources,
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx},
        py_limited_api=True,
    )


_ext = extension()
setup(
    ext_modules=[_ext] if _ext is not None else [],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
