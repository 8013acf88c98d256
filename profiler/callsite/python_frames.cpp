// python_frames.cpp — Python frames of the calling thread (see python_frames.h). Uses only the
// stable C API of CPython 3.9+: PyEval_GetFrame, PyFrame_GetBack, PyFrame_GetCode,
// PyFrame_GetLineNumber, and the co_filename / co_qualname (or co_name) attributes.
#include "profiler/callsite/python_frames.h"

#include <dlfcn.h>

#include <mutex>
#include <unordered_map>

namespace spillway::callsite {

namespace {

using Obj = void*;  // PyObject*

struct Api {
  int (*is_initialized)() = nullptr;
  int (*gil_check)() = nullptr;
  Obj (*this_thread_state)() = nullptr;  // PyGILState_GetThisThreadState
  Obj (*current_state)() = nullptr;      // optional: the attached thread state, unchecked
  Obj (*get_frame)() = nullptr;          // borrowed
  Obj (*frame_back)(Obj) = nullptr;      // new reference
  Obj (*frame_code)(Obj) = nullptr;      // new reference
  int (*frame_line)(Obj) = nullptr;
  Obj (*getattr)(Obj, const char*) = nullptr;  // new reference
  const char* (*utf8)(Obj) = nullptr;
  void (*incref)(Obj) = nullptr;
  void (*decref)(Obj) = nullptr;
  Obj (*err_occurred)() = nullptr;
  void (*err_clear)() = nullptr;
  bool ok = false;
};

template <typename F>
bool Find(F* f, const char* name) {
  *f = reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
  return *f != nullptr;
}

const Api& GetApi() {
  static const Api api = [] {
    Api a;
    a.ok = Find(&a.is_initialized, "Py_IsInitialized") && Find(&a.gil_check, "PyGILState_Check") &&
           Find(&a.this_thread_state, "PyGILState_GetThisThreadState") &&
           Find(&a.get_frame, "PyEval_GetFrame") && Find(&a.frame_back, "PyFrame_GetBack") &&
           Find(&a.frame_code, "PyFrame_GetCode") && Find(&a.frame_line, "PyFrame_GetLineNumber") &&
           Find(&a.getattr, "PyObject_GetAttrString") && Find(&a.utf8, "PyUnicode_AsUTF8") &&
           Find(&a.incref, "Py_IncRef") && Find(&a.decref, "Py_DecRef") &&
           Find(&a.err_occurred, "PyErr_Occurred") && Find(&a.err_clear, "PyErr_Clear");
    // Where present, the thread state this thread runs with must be its own (PyGILState_Check
    // answers 1 unconditionally once sub-interpreters exist).
    if (!Find(&a.current_state, "PyThreadState_GetUnchecked"))
      Find(&a.current_state, "_PyThreadState_UncheckedGet");
    return a;
  }();
  return api;
}

// A code object's "FILE FUNCTION", keyed by the object, which is kept alive (one reference
// taken for good) so that its address is never reused.
std::mutex g_mu;
std::unordered_map<Obj, std::string>* g_names = new std::unordered_map<Obj, std::string>;

std::string Attr(const Api& a, Obj o, const char* name) {
  Obj v = a.getattr(o, name);
  if (v == nullptr) {
    a.err_clear();
    return {};
  }
  const char* s = a.utf8(v);
  std::string r = s != nullptr ? s : "";
  if (s == nullptr) a.err_clear();
  a.decref(v);
  return r;
}

const std::string* NameOf(const Api& a, Obj code) {  // consumes the reference to `code`
  std::lock_guard<std::mutex> lk(g_mu);
  if (auto it = g_names->find(code); it != g_names->end()) {
    a.decref(code);
    return &it->second;
  }
  std::string file = Attr(a, code, "co_filename");
  std::string fn = Attr(a, code, "co_qualname");
  if (fn.empty()) fn = Attr(a, code, "co_name");
  if (file.empty()) file = "?";
  if (fn.empty()) fn = "?";
  return &g_names->emplace(code, file + " " + fn).first->second;  // keeps the reference
}

}  // namespace

std::size_t PythonFrames(PyFrame* out, std::size_t max) {
  const Api& a = GetApi();
  if (!a.ok || max == 0 || !a.is_initialized() || !a.gil_check()) return 0;
  if (a.current_state != nullptr) {
    Obj mine = a.this_thread_state();
    if (mine == nullptr || a.current_state() != mine) return 0;
  }
  if (a.err_occurred() != nullptr) return 0;  // leave a pending exception alone
  Obj f = a.get_frame();
  if (f == nullptr) return 0;
  a.incref(f);
  std::size_t n = 0;
  while (f != nullptr && n < max) {
    Obj code = a.frame_code(f);
    if (code == nullptr) break;
    out[n].line = a.frame_line(f);
    out[n].where = NameOf(a, code);
    ++n;
    Obj back = a.frame_back(f);
    a.decref(f);
    f = back;
  }
  if (f != nullptr) a.decref(f);
  return n;
}

}  // namespace spillway::callsite
