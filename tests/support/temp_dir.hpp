// A fresh folder of one's own under the system's temporary directory (/tmp
// unless TMPDIR says otherwise), removed with everything in it when the
// object goes: for SQLite files, journals and logs. The tests, the examples,
// the benchmarks and the fuzzers share it; it needs no test framework.
#pragma once

#include <stdlib.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace karlton::testing {

class temp_dir {
public:
  /// `tag` names the folder: "store" makes <parent>/karlton-store-XXXXXX.
  /// Throws std::system_error if it cannot be made (in a test case, Catch
  /// reports that as its failure).
  explicit temp_dir(const std::string& tag, const std::filesystem::path& parent =
                                              std::filesystem::temp_directory_path()) {
    auto name = (parent / ("karlton-" + tag + "-XXXXXX")).string();
    if (::mkdtemp(name.data()) == nullptr)
      throw std::system_error{errno, std::generic_category(),
                              "cannot make the temporary folder " + name};
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

/// Copies `from` to `to` as a crash at this moment would leave it, while
/// another thread may still be writing or emptying it (a live journal):
/// the old bytes, a prefix, or none. Not std::filesystem::copy_file, which
/// reports a source that shrinks during the copy as EIO.
inline void snapshot(const std::string& from, const std::string& to) {
  std::ifstream in{from, std::ios::binary};
  std::ofstream out{to, std::ios::binary | std::ios::trunc};
  out << in.rdbuf();
}

} // namespace karlton::testing
