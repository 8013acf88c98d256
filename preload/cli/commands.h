// commands.h — the subcommands of the `spillway` command line tool.
#pragma once

namespace spillway::cli {

int Run(int argc, char** argv);     // spillway run [options] -- CMD...
int Info(int argc, char** argv);    // spillway info
int Replay(int argc, char** argv);  // spillway replay TRACE [--device-memory BYTES]
int Report(int argc, char** argv);  // spillway report LOG... [-o DIR] [--format ...]

}  // namespace spillway::cli
