// Operator schemas of the realsr_fast library, and the Python module stub that loads them.
//
// The kernels register themselves per device in cpu/*.cpp and cuda/*.cpp; the fake (meta)
// implementations for torch.compile live in realsr_fast/ops.py.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(realsr_fast, m) {
  m.def(
      "degrade(Tensor hr, Tensor kernels, int scale, Tensor? noise_bank=None, "
      "Tensor? noise_index=None, Tensor? noise_offset=None, str padding=\"symmetric\", "
      "bool clamp=True, bool quantize=False, ScalarType? out_dtype=None) -> Tensor");
  m.def("patch_stats(Tensor img, int patch, int stride) -> (Tensor, Tensor)");
}

// `import realsr_fast._C` only needs to load this library (which runs the registrations above);
// the module itself is empty.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
