// python_frames.cpp — Python frames of the calling thread (see python_frames.h). Holding the GIL:
// the stable C API of CPython 3.9+ (PyEval_GetFrame, PyFrame_GetBack, PyFrame_GetCode,
// PyFrame_GetLineNumber, and the co_filename / co_qualname (or co_name) attributes). Without
// it: PythonFramesWithoutGil (python_nogil.cpp). Also the set of interned "FILE FUNCTION" texts.
#include "profiler/callsite/python_frames.h"

#include <dlfcn.h>
#include <pthread.h>

#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "profiler/callsite/python_nogil.h"

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

// Interned "FILE FUNCTION" texts (never freed: PyFrame::where and the stack cache point into
// the set's nodes).
struct Interned {
  std::mutex mu;
  std::unordered_set<std::string> texts;
};

Interned& TheInterned() {
  static Interned* in = [] {
    auto* p = new Interned;
    // A fork while another thread holds the lock must not leave it held in the child.
    pthread_atfork([] { TheInterned().mu.lock(); }, [] { TheInterned().mu.unlock(); },
                   [] { TheInterned().mu.unlock(); });
    return p;
  }();
  return *in;
}

// A code object's interned "FILE FUNCTION", keyed by the object, which is kept alive (one
// reference taken for good) so that its address is never reused. Read with the GIL held only.
std::mutex g_mu;
std::unordered_map<Obj, const std::string*>* g_names =
    new std::unordered_map<Obj, const std::string*>;

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
  {
    std::lock_guard<std::mutex> lk(g_mu);
    if (auto it = g_names->find(code); it != g_names->end()) {
      a.decref(code);
      return it->second;
    }
  }
  // Not under the lock: the attribute calls run CPython code.
  std::string file = Attr(a, code, "co_filename");
  std::string fn = Attr(a, code, "co_qualname");
  if (fn.empty()) fn = Attr(a, code, "co_name");
  if (file.empty()) file = "?";
  if (fn.empty()) fn = "?";
  const std::string* where = InternWhere(file, fn);
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g_names->emplace(code, where).second) a.decref(code);  // keeps the reference if new
  return where;
}

}  // namespace

const std::string* InternWhere(std::string_view file, std::string_view function) {
  std::string text;
  text.reserve(file.size() + 1 + function.size());
  text.append(file).append(" ").append(function);
  Interned& in = TheInterned();
  std::lock_guard<std::mutex> lk(in.mu);
  return &*in.texts.insert(std::move(text)).first;
}

std::size_t PythonFrames(PyFrame* out, std::size_t max) {
  const Api& a = GetApi();
  if (!a.ok || max == 0 || !a.is_initialized()) return 0;
  if (!a.gil_check()) return PythonFramesWithoutGil(out, max);
  if (a.current_state != nullptr) {
    // PyGILState_Check answers 1 unconditionally once sub-interpreters exist: the thread state
    // this thread runs with must be its own. None attached (3.12+; 3.11: none holds the GIL):
    // this thread does not hold the GIL.
    Obj current = a.current_state();
    if (current == nullptr) return PythonFramesWithoutGil(out, max);
    Obj mine = a.this_thread_state();
    if (mine == nullptr || current != mine) return 0;
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
