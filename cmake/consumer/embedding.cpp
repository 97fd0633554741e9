// The README's embedding example (its first C++ snippet, under "Quick start"),
// built as is: readme_embedding.inc is that snippet, byte for byte
// (scripts/check-install fails if they differ). Its #includes come first here,
// so that inside main they are no-ops (#pragma once); main's parameters are
// the command line the snippet hands the runtime.
#include <iostream>

#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

int main(int argc, char** argv) {
#include "readme_embedding.inc"
  return stats ? 0 : 1;
}
