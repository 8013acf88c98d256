// stack.h — the C++ half of a call site: raw return addresses of the caller's stack with
// Spillway's own frames (libspillway, the preload hooks) left out, and their symbolization
// (dladdr + demangling; module+offset where there is no symbol).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace spillway::callsite {

// Up to `max` return addresses, innermost first, from the first frame outside Spillway.
std::size_t CppFrames(std::uintptr_t* out, std::size_t max);

// "SYMBOL+0xOFF (MODULE)", "MODULE+0xOFF" without a symbol, "0xADDR" outside any module.
// MODULE is the file's base name; long symbols are cut to about 240 bytes.
std::string Symbolize(std::uintptr_t pc);

}  // namespace spillway::callsite
