// A fresh folder under /tmp for one test, removed with everything in it when
// the test ends (for SQLite files, journals and the like).
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

#include <catch2/catch.hpp>

namespace karlton::testing {

class temp_dir {
public:
  /// `tag` names the folder, e.g. "store" makes /tmp/karlton-store-XXXXXX.
  explicit temp_dir(const std::string& tag) {
    std::string name = "/tmp/karlton-" + tag + "-XXXXXX";
    REQUIRE(::mkdtemp(name.data()) != nullptr);
    path_ = name;
  }
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }
  /// The path of `name` inside the folder.
  std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
  std::filesystem::path path_;
};

} // namespace karlton::testing
