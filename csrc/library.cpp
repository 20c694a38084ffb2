// The srkd_ext operator library. Each op declares its schema in its own file
// (csrc/<op>.cpp, TORCH_LIBRARY_FRAGMENT) and its kernels in csrc/cpu/<op>_cpu.cpp and
// csrc/cuda/<op>_cuda.cu (TORCH_LIBRARY_IMPL); this file owns the namespace and build facts.
#include <torch/library.h>

namespace srkd {

bool compiled_with_cuda() {
#ifdef SRKD_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace srkd

TORCH_LIBRARY(srkd_ext, m) {
  m.def("compiled_with_cuda() -> bool", &srkd::compiled_with_cuda);
}
