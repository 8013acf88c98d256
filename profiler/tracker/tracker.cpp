// tracker.cpp — the CUPTI tracker (see tracker.h). The decoding (ScanLaunch, ScanDirect) is
// plain C++ tested on the CPU; the CUPTI glue below it is small and runs on the GPU only.
#include "profiler/tracker/tracker.h"

#include <cuda.h>
#include <cupti.h>  // callbacks, driver cbids and the parameter structs (generated_cuda_meta.h)
#include <dlfcn.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "allocator/prim/cuda_driver.h"

namespace spillway::tracker {

CounterValues Read(const Counters& c) {
  CounterValues v;
  v.launches = c.launches.load(std::memory_order_relaxed);
  v.by_param_info = c.by_param_info.load(std::memory_order_relaxed);
  v.by_extra = c.by_extra.load(std::memory_order_relaxed);
  v.undecodable = c.undecodable.load(std::memory_order_relaxed);
  v.words = c.words.load(std::memory_order_relaxed);
  v.hits = c.hits.load(std::memory_order_relaxed);
  v.copies = c.copies.load(std::memory_order_relaxed);
  v.graph_launches = c.graph_launches.load(std::memory_order_relaxed);
  v.streams_created = c.streams_created.load(std::memory_order_relaxed);
  return v;
}

namespace {
// Per-thread scratch for one launch's words (reused: no allocation per launch once warm).
thread_local std::vector<std::uint64_t> t_words;

void Lookup(BlockIndex& index, const std::uint64_t* w, std::size_t n, const Access& a,
            Counters& c) {
  c.words.fetch_add(n, std::memory_order_relaxed);
  if (n == 0) return;
  const std::size_t hits = index.record(w, n, a);
  if (hits != 0) c.hits.fetch_add(hits, std::memory_order_relaxed);
}
}  // namespace

Decoded ScanLaunch(BlockIndex& index, const ParamLayout* layout, void* const* params,
                   void* const* extra, const Access& a, Counters& c) {
  c.launches.fetch_add(1, std::memory_order_relaxed);
  std::vector<std::uint64_t>& w = t_words;
  w.clear();
  Decoded how = Decoded::kUndecodable;
  const void* buf = nullptr;
  std::size_t size = 0;
  if (params != nullptr) {
    if (layout != nullptr) {
      CollectKernelParams(*layout, params, &w);
      how = Decoded::kParamInfo;
    }
  } else if (extra != nullptr) {
    if (ParseExtra(extra, &buf, &size)) {
      CollectPacked(layout, buf, size, &w);
      how = Decoded::kExtra;
    }
  } else if (layout != nullptr && layout->empty()) {
    how = Decoded::kParamInfo;  // a kernel without arguments
  }
  switch (how) {
    case Decoded::kParamInfo: c.by_param_info.fetch_add(1, std::memory_order_relaxed); break;
    case Decoded::kExtra: c.by_extra.fetch_add(1, std::memory_order_relaxed); break;
    case Decoded::kUndecodable: c.undecodable.fetch_add(1, std::memory_order_relaxed); break;
  }
  Lookup(index, w.data(), w.size(), a, c);
  return how;
}

void ScanDirect(BlockIndex& index, const std::uint64_t* ptrs, std::size_t n, const Access& a,
                Counters& c) {
  c.copies.fetch_add(1, std::memory_order_relaxed);
  Lookup(index, ptrs, n, a, c);
}

// ---- CUPTI glue (compiled here, run on the GPU machine only) ----------------------------------

namespace {

using SubscribeV2Fn = CUptiResult (*)(CUpti_SubscriberHandle*, CUpti_CallbackFunc, void*,
                                      CUpti_SubscriberParams*);
using SubscribeFn = CUptiResult (*)(CUpti_SubscriberHandle*, CUpti_CallbackFunc, void*);
using UnsubscribeFn = CUptiResult (*)(CUpti_SubscriberHandle);
using EnableCallbackFn = CUptiResult (*)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain,
                                         CUpti_CallbackId);
using GetResultStringFn = CUptiResult (*)(CUptiResult, const char**);

constexpr std::size_t kMaxParams = 4096;  // bound on the layout query loop

struct Layout {
  bool known = false;
  ParamLayout slots;
};

struct State {
  const prim::CudaDriver* drv = nullptr;
  BlockIndex* index = nullptr;
  Counters counters;
  std::atomic<std::uint64_t> seq{0};
  std::shared_mutex layouts_mu;
  std::unordered_map<CUfunction, Layout> layouts;  // node-based: values never move
};

State* g_state = nullptr;  // set once, before any callback is enabled; never freed
std::mutex g_start_mu;
int g_start_result = -1;  // -1 not tried, 0 failed, 1 active

// Iterates get(handle, i, ...) from i = 0 until it fails. *first_error: the result at index 0.
template <class Get, class Handle>
bool Query(Get get, Handle h, ParamLayout* out, CUresult* first_error) {
  out->clear();
  for (std::size_t i = 0; i < kMaxParams; ++i) {
    std::size_t off = 0, size = 0;
    CUresult r = get(h, i, &off, &size);
    if (r != CUDA_SUCCESS) {
      if (i == 0) *first_error = r;
      return i != 0;
    }
    out->push_back(ParamSlot{off, size});
  }
  return true;
}

Layout QueryLayout(const prim::CudaDriver* d, CUfunction f) {
  Layout l;
  CUresult r1 = CUDA_ERROR_NOT_SUPPORTED, r2 = CUDA_ERROR_NOT_SUPPORTED;
  if (d->cuKernelGetParamInfo != nullptr &&
      Query(d->cuKernelGetParamInfo, reinterpret_cast<CUkernel>(f), &l.slots, &r1)) {
    l.known = true;
  } else if (d->cuFuncGetParamInfo != nullptr &&
             Query(d->cuFuncGetParamInfo, f, &l.slots, &r2)) {
    l.known = true;
  } else {
    // Both failed at index 0: "index out of range" from either means no arguments; an invalid
    // handle from both means we cannot tell.
    l.slots.clear();
    l.known = r1 == CUDA_ERROR_INVALID_VALUE || r2 == CUDA_ERROR_INVALID_VALUE;
  }
  return l;
}

const ParamLayout* LayoutOf(State& st, CUfunction f) {
  {
    std::shared_lock<std::shared_mutex> lk(st.layouts_mu);
    auto it = st.layouts.find(f);
    if (it != st.layouts.end()) return it->second.known ? &it->second.slots : nullptr;
  }
  Layout l = QueryLayout(st.drv, f);  // outside the lock: a driver call
  std::unique_lock<std::shared_mutex> lk(st.layouts_mu);
  auto it = st.layouts.emplace(f, std::move(l)).first;  // keeps another thread's if first
  return it->second.known ? &it->second.slots : nullptr;
}

std::uint64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

// The stream value recorded: a null stream of a per-thread-default-stream (_ptsz/_ptds) call
// is the per-thread stream.
std::uint64_t StreamOf(CUstream s, bool per_thread) {
  auto v = reinterpret_cast<std::uintptr_t>(s);
  if (v == 0 && per_thread) v = reinterpret_cast<std::uintptr_t>(CU_STREAM_PER_THREAD);
  return v;
}

Access Next(State& st, CUstream s, bool per_thread) {
  return Access{NowNs(), st.seq.fetch_add(1, std::memory_order_relaxed) + 1,
                StreamOf(s, per_thread)};
}

void OnLaunch(State& st, CUfunction f, CUstream s, bool pt, void** params, void** extra) {
  const ParamLayout* layout = LayoutOf(st, f);
  ScanLaunch(*st.index, layout, params, extra, Next(st, s, pt), st.counters);
}

void OnDirect(State& st, CUdeviceptr a, CUdeviceptr b, CUstream s, bool pt) {
  const std::uint64_t w[2] = {a, b};
  ScanDirect(*st.index, w, b != 0 ? 2 : 1, Next(st, s, pt), st.counters);
}

void CUPTIAPI Callback(void* userdata, CUpti_CallbackDomain domain, CUpti_CallbackId cbid,
                       const void* cbdata) {
  if (domain != CUPTI_CB_DOMAIN_DRIVER_API || userdata == nullptr || cbdata == nullptr) return;
  const auto* cb = static_cast<const CUpti_CallbackData*>(cbdata);
  if (cb->callbackSite != CUPTI_API_ENTER || cb->functionParams == nullptr) return;
  State& st = *static_cast<State*>(userdata);
  const void* fp = cb->functionParams;
#define SPW_P(name) (*static_cast<const name##_params*>(fp))
#define SPW_CASE(name) case CUPTI_DRIVER_TRACE_CBID_##name:
  switch (cbid) {
    // Kernel launches.
    SPW_CASE(cuLaunchKernel) {
      const auto& p = SPW_P(cuLaunchKernel);
      OnLaunch(st, p.f, p.hStream, false, p.kernelParams, p.extra);
      break;
    }
    SPW_CASE(cuLaunchKernel_ptsz) {
      const auto& p = SPW_P(cuLaunchKernel_ptsz);
      OnLaunch(st, p.f, p.hStream, true, p.kernelParams, p.extra);
      break;
    }
    SPW_CASE(cuLaunchKernelEx) {
      const auto& p = SPW_P(cuLaunchKernelEx);
      OnLaunch(st, p.f, p.config ? p.config->hStream : nullptr, false, p.kernelParams, p.extra);
      break;
    }
    SPW_CASE(cuLaunchKernelEx_ptsz) {
      const auto& p = SPW_P(cuLaunchKernelEx_ptsz);
      OnLaunch(st, p.f, p.config ? p.config->hStream : nullptr, true, p.kernelParams, p.extra);
      break;
    }
    SPW_CASE(cuLaunchCooperativeKernel) {
      const auto& p = SPW_P(cuLaunchCooperativeKernel);
      OnLaunch(st, p.f, p.hStream, false, p.kernelParams, nullptr);
      break;
    }
    SPW_CASE(cuLaunchCooperativeKernel_ptsz) {
      const auto& p = SPW_P(cuLaunchCooperativeKernel_ptsz);
      OnLaunch(st, p.f, p.hStream, true, p.kernelParams, nullptr);
      break;
    }
    // Copies: device pointers only (a host side is passed as 0).
    SPW_CASE(cuMemcpy) { const auto& p = SPW_P(cuMemcpy); OnDirect(st, p.dst, p.src, nullptr, false); break; }
    SPW_CASE(cuMemcpy_ptds) { const auto& p = SPW_P(cuMemcpy_ptds); OnDirect(st, p.dst, p.src, nullptr, true); break; }
    SPW_CASE(cuMemcpyAsync) { const auto& p = SPW_P(cuMemcpyAsync); OnDirect(st, p.dst, p.src, p.hStream, false); break; }
    SPW_CASE(cuMemcpyAsync_ptsz) { const auto& p = SPW_P(cuMemcpyAsync_ptsz); OnDirect(st, p.dst, p.src, p.hStream, true); break; }
    SPW_CASE(cuMemcpyHtoD_v2) { const auto& p = SPW_P(cuMemcpyHtoD_v2); OnDirect(st, p.dstDevice, 0, nullptr, false); break; }
    SPW_CASE(cuMemcpyHtoD_v2_ptds) { const auto& p = SPW_P(cuMemcpyHtoD_v2_ptds); OnDirect(st, p.dstDevice, 0, nullptr, true); break; }
    SPW_CASE(cuMemcpyDtoH_v2) { const auto& p = SPW_P(cuMemcpyDtoH_v2); OnDirect(st, p.srcDevice, 0, nullptr, false); break; }
    SPW_CASE(cuMemcpyDtoH_v2_ptds) { const auto& p = SPW_P(cuMemcpyDtoH_v2_ptds); OnDirect(st, p.srcDevice, 0, nullptr, true); break; }
    SPW_CASE(cuMemcpyDtoD_v2) { const auto& p = SPW_P(cuMemcpyDtoD_v2); OnDirect(st, p.dstDevice, p.srcDevice, nullptr, false); break; }
    SPW_CASE(cuMemcpyDtoD_v2_ptds) { const auto& p = SPW_P(cuMemcpyDtoD_v2_ptds); OnDirect(st, p.dstDevice, p.srcDevice, nullptr, true); break; }
    SPW_CASE(cuMemcpyHtoDAsync_v2) { const auto& p = SPW_P(cuMemcpyHtoDAsync_v2); OnDirect(st, p.dstDevice, 0, p.hStream, false); break; }
    SPW_CASE(cuMemcpyHtoDAsync_v2_ptsz) { const auto& p = SPW_P(cuMemcpyHtoDAsync_v2_ptsz); OnDirect(st, p.dstDevice, 0, p.hStream, true); break; }
    SPW_CASE(cuMemcpyDtoHAsync_v2) { const auto& p = SPW_P(cuMemcpyDtoHAsync_v2); OnDirect(st, p.srcDevice, 0, p.hStream, false); break; }
    SPW_CASE(cuMemcpyDtoHAsync_v2_ptsz) { const auto& p = SPW_P(cuMemcpyDtoHAsync_v2_ptsz); OnDirect(st, p.srcDevice, 0, p.hStream, true); break; }
    SPW_CASE(cuMemcpyDtoDAsync_v2) { const auto& p = SPW_P(cuMemcpyDtoDAsync_v2); OnDirect(st, p.dstDevice, p.srcDevice, p.hStream, false); break; }
    SPW_CASE(cuMemcpyDtoDAsync_v2_ptsz) { const auto& p = SPW_P(cuMemcpyDtoDAsync_v2_ptsz); OnDirect(st, p.dstDevice, p.srcDevice, p.hStream, true); break; }
    // Sets.
    SPW_CASE(cuMemsetD8_v2) { OnDirect(st, SPW_P(cuMemsetD8_v2).dstDevice, 0, nullptr, false); break; }
    SPW_CASE(cuMemsetD16_v2) { OnDirect(st, SPW_P(cuMemsetD16_v2).dstDevice, 0, nullptr, false); break; }
    SPW_CASE(cuMemsetD32_v2) { OnDirect(st, SPW_P(cuMemsetD32_v2).dstDevice, 0, nullptr, false); break; }
    SPW_CASE(cuMemsetD8_v2_ptds) { OnDirect(st, SPW_P(cuMemsetD8_v2_ptds).dstDevice, 0, nullptr, true); break; }
    SPW_CASE(cuMemsetD16_v2_ptds) { OnDirect(st, SPW_P(cuMemsetD16_v2_ptds).dstDevice, 0, nullptr, true); break; }
    SPW_CASE(cuMemsetD32_v2_ptds) { OnDirect(st, SPW_P(cuMemsetD32_v2_ptds).dstDevice, 0, nullptr, true); break; }
    SPW_CASE(cuMemsetD8Async) { const auto& p = SPW_P(cuMemsetD8Async); OnDirect(st, p.dstDevice, 0, p.hStream, false); break; }
    SPW_CASE(cuMemsetD16Async) { const auto& p = SPW_P(cuMemsetD16Async); OnDirect(st, p.dstDevice, 0, p.hStream, false); break; }
    SPW_CASE(cuMemsetD32Async) { const auto& p = SPW_P(cuMemsetD32Async); OnDirect(st, p.dstDevice, 0, p.hStream, false); break; }
    SPW_CASE(cuMemsetD8Async_ptsz) { const auto& p = SPW_P(cuMemsetD8Async_ptsz); OnDirect(st, p.dstDevice, 0, p.hStream, true); break; }
    SPW_CASE(cuMemsetD16Async_ptsz) { const auto& p = SPW_P(cuMemsetD16Async_ptsz); OnDirect(st, p.dstDevice, 0, p.hStream, true); break; }
    SPW_CASE(cuMemsetD32Async_ptsz) { const auto& p = SPW_P(cuMemsetD32Async_ptsz); OnDirect(st, p.dstDevice, 0, p.hStream, true); break; }
    // Graphs: counted only (the kernels inside are not decoded yet).
    SPW_CASE(cuGraphLaunch)
    SPW_CASE(cuGraphLaunch_ptsz) {
      st.counters.graph_launches.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    SPW_CASE(cuStreamCreate)
    SPW_CASE(cuStreamCreateWithPriority) {
      st.counters.streams_created.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    default: break;
  }
#undef SPW_CASE
#undef SPW_P
}

// Exactly the callbacks handled above (enabling more costs time per call).
constexpr CUpti_CallbackId kCallbacks[] = {
    CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel, CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx, CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel,
    CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpy, CUPTI_DRIVER_TRACE_CBID_cuMemcpy_ptds,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyAsync, CUPTI_DRIVER_TRACE_CBID_cuMemcpyAsync_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoD_v2, CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoD_v2_ptds,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoH_v2, CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoH_v2_ptds,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoD_v2, CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoD_v2_ptds,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoDAsync_v2,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoDAsync_v2_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoHAsync_v2,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoHAsync_v2_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoDAsync_v2,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoDAsync_v2_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuMemsetD8_v2, CUPTI_DRIVER_TRACE_CBID_cuMemsetD16_v2,
    CUPTI_DRIVER_TRACE_CBID_cuMemsetD32_v2, CUPTI_DRIVER_TRACE_CBID_cuMemsetD8_v2_ptds,
    CUPTI_DRIVER_TRACE_CBID_cuMemsetD16_v2_ptds, CUPTI_DRIVER_TRACE_CBID_cuMemsetD32_v2_ptds,
    CUPTI_DRIVER_TRACE_CBID_cuMemsetD8Async, CUPTI_DRIVER_TRACE_CBID_cuMemsetD16Async,
    CUPTI_DRIVER_TRACE_CBID_cuMemsetD32Async, CUPTI_DRIVER_TRACE_CBID_cuMemsetD8Async_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuMemsetD16Async_ptsz, CUPTI_DRIVER_TRACE_CBID_cuMemsetD32Async_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch, CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuStreamCreate, CUPTI_DRIVER_TRACE_CBID_cuStreamCreateWithPriority,
};

void* OpenCupti(std::string* why) {
  std::vector<std::string> names;
  if (const char* p = std::getenv("SPILLWAY_CUPTI_LIB"); p != nullptr && *p != '\0') {
    names.emplace_back(p);
  } else {
    names = {"libcupti.so.13", "libcupti.so", "/usr/local/cuda/lib64/libcupti.so.13",
             "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so.13"};
  }
  std::string errors;
  for (const std::string& n : names) {
    if (void* h = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
    const char* e = dlerror();
    if (!errors.empty()) errors += "; ";
    errors += e != nullptr ? e : n + ": cannot load";
  }
  *why = "cannot load " + names.front() + ": " + errors;
  return nullptr;
}

std::string CuptiError(GetResultStringFn str, CUptiResult r) {
  const char* s = nullptr;
  if (str != nullptr) str(r, &s);
  return "CUPTI error " + std::to_string(static_cast<int>(r)) + (s ? std::string(" ") + s : "");
}

// Subscribes and enables the callbacks. False with *why.
bool Start(BlockIndex* index, std::string* why) {
  void* lib = OpenCupti(why);
  if (lib == nullptr) return false;
  auto sym = [lib](const char* name) { return prim::RealDlsym(lib, name); };
  auto subscribe_v2 = reinterpret_cast<SubscribeV2Fn>(sym("cuptiSubscribe_v2"));
  auto subscribe = reinterpret_cast<SubscribeFn>(sym("cuptiSubscribe"));
  auto unsubscribe = reinterpret_cast<UnsubscribeFn>(sym("cuptiUnsubscribe"));
  auto enable = reinterpret_cast<EnableCallbackFn>(sym("cuptiEnableCallback"));
  auto result_string = reinterpret_cast<GetResultStringFn>(sym("cuptiGetResultString"));
  if ((subscribe_v2 == nullptr && subscribe == nullptr) || enable == nullptr ||
      unsubscribe == nullptr) {
    *why = "libcupti lacks cuptiSubscribe/cuptiEnableCallback";
    return false;
  }
  std::string err;
  const prim::CudaDriver* drv = prim::LoadCudaDriver(&err);
  if (drv == nullptr) {
    *why = err;
    return false;
  }
  auto* st = new State;  // never freed: callbacks may run until the process ends
  st->drv = drv;
  st->index = index;
  CUpti_SubscriberHandle sub = nullptr;
  CUptiResult r;
  char holder[CUPTI_OLD_SUBSCRIBER_NAME_MIN_LEN + 1] = {};
  if (subscribe_v2 != nullptr) {
    CUpti_SubscriberParams params{};
    params.structSize = CUpti_SubscriberParams_STRUCT_SIZE;
    params.subscriberName = "Spillway";
    params.oldSubscriberName = holder;
    params.oldSubscriberSize = CUPTI_OLD_SUBSCRIBER_NAME_MIN_LEN;
    r = subscribe_v2(&sub, Callback, st, &params);
  } else {
    r = subscribe(&sub, Callback, st);
  }
  if (r != CUPTI_SUCCESS) {
    *why = CuptiError(result_string, r);
    if (r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED)
      *why += std::string(": another tool holds CUPTI") + (holder[0] ? std::string(" (") + holder + ")" : "");
    delete st;
    return false;
  }
  for (CUpti_CallbackId cbid : kCallbacks) {
    r = enable(1, sub, CUPTI_CB_DOMAIN_DRIVER_API, cbid);
    if (r != CUPTI_SUCCESS) {
      *why = "cuptiEnableCallback(driver cbid " + std::to_string(cbid) + "): " +
             CuptiError(result_string, r);
      unsubscribe(sub);
      // st may still be in use by a callback that started before the unsubscribe: leak it.
      return false;
    }
  }
  g_state = st;
  return true;
}

}  // namespace

bool StartTracking(BlockIndex* index) {
  std::lock_guard<std::mutex> lk(g_start_mu);
  if (g_start_result < 0) {
    std::string why;
    g_start_result = index != nullptr && Start(index, &why) ? 1 : 0;
    if (g_start_result == 0) {
      if (index == nullptr) why = "no block index";
      std::fprintf(stderr, "spillway: CUPTI unavailable (%s): running without tracking\n",
                   why.c_str());
    }
  }
  return g_start_result == 1;
}

bool TrackingActive() {
  std::lock_guard<std::mutex> lk(g_start_mu);
  return g_start_result == 1;
}

CounterValues TrackingCounters() {
  std::lock_guard<std::mutex> lk(g_start_mu);
  return g_start_result == 1 && g_state != nullptr ? Read(g_state->counters) : CounterValues{};
}

std::string TrackingSummary() {
  if (!TrackingActive()) return "";
  const CounterValues v = TrackingCounters();
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "  tracker (CUPTI)\n"
                "    launches          %" PRIu64 " (decoded: %" PRIu64 " by parameter info, %" PRIu64
                " by extra buffer; %" PRIu64 " undecodable)\n"
                "    copies and sets   %" PRIu64 "\n"
                "    graph launches    %" PRIu64 " (kernels inside graphs are not decoded)\n"
                "    argument words    %" PRIu64 " looked up, %" PRIu64 " in live blocks\n",
                v.launches, v.by_param_info, v.by_extra, v.undecodable, v.copies,
                v.graph_launches, v.words, v.hits);
  return buf;
}

}  // namespace spillway::tracker
