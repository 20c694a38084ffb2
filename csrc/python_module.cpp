// Lets `import srkd_ext._C` load the shared library (which registers the ops with the
// dispatcher through static initialisers). The ops themselves are reached through
// torch.ops.srkd_ext, never through this module. Not part of the CMake (libtorch) build.
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "srkd_ext kernels (ops live in torch.ops.srkd_ext)", -1, nullptr};
  return PyModule_Create(&module_def);
}
}
