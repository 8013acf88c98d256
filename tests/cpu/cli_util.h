// cli_util.h — helpers of the tests that run the `spillway` command (SPILLWAY_CLI_PATH, set by
// CMake) and handle files: run with output captured, read and write whole files.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#ifndef SPILLWAY_CLI_PATH
#error "SPILLWAY_CLI_PATH must name the spillway CLI"
#endif

namespace spillway::test {

struct RunResult {
  int status;  // exit status (128 if killed)
  std::string output;  // stdout and stderr
};

inline RunResult RunCli(const std::string& args) {
  std::string cmd = std::string(SPILLWAY_CLI_PATH) + " " + args + " 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return {-1, "popen failed"};
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int st = pclose(f);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128, out};
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

}  // namespace spillway::test
