// dlsym_hook.cpp — replaces dlsym so that lookups of the CUDA allocation entry points by name
// (cudart and frameworks find libcuda's functions this way) return Spillway's interposers.
// Every other lookup must behave exactly like glibc's dlsym, including RTLD_NEXT, which depends
// on the caller's address: on x86-64 the hook is an assembly trampoline that tail-jumps into
// the real dlsym with the caller's return address untouched.
#include <dlfcn.h>

#include "preload/preload.h"

extern "C" {
// Our replacement for `symbol`, or nullptr; also sets spw_real_dlsym on first use.
__attribute__((visibility("hidden"))) void* spw_dlsym_override(const char* symbol);
__attribute__((visibility("hidden"))) void* spw_real_dlsym = nullptr;
}

void* spw_dlsym_override(const char* symbol) {
  if (spw_real_dlsym == nullptr) {
    void* libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
    void* f = libc ? dlvsym(libc, "dlsym", "GLIBC_2.34") : nullptr;
    if (f == nullptr && libc) f = dlvsym(libc, "dlsym", "GLIBC_2.2.5");
    spw_real_dlsym = f;
  }
  return spillway::preload::HookFor(symbol);
}

#if defined(__x86_64__)
// void* dlsym(void* handle, const char* symbol)
asm(R"(
  .text
  .globl dlsym
  .type dlsym, @function
dlsym:
  pushq %rdi
  pushq %rsi
  subq $8, %rsp
  movq %rsi, %rdi
  call spw_dlsym_override
  addq $8, %rsp
  popq %rsi
  popq %rdi
  testq %rax, %rax
  jnz 1f
  jmp *spw_real_dlsym(%rip)
1:
  ret
  .size dlsym, .-dlsym
)");
#else
#error "the dlsym trampoline is written for x86-64; port it before building the preload here"
#endif
