// The Python module `realsr_fast._C`: importing it loads this library, whose static
// registrations (ops.cpp, cpu/, cuda/) add the ops to torch's dispatcher. The module is empty.
#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
