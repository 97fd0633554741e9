// Fuzzes the journal's recovery: a write-back cache reads its journal file at
// start-up, whatever a crash (or a bad disk) left in it. The input is the
// file's bytes.
//
// Checked beyond "no crash, no sanitizer report": a file that is empty, a torn
// header or a header's worth of zeros becomes just the header; any other is
// either refused and left as it was (never one that starts with our header),
// or cut to a prefix of itself (valid bytes + discarded bytes = file size, the
// cut bytes copied beside it); and a second recovery finds the same records
// and nothing more to discard.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "stores/journal.hpp"
#include "stores/journal_records.hpp"
#include "tests/support/temp_dir.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;

namespace {

// A folder of our own for the file, removed at exit: in /dev/shm when there
// is one, so the syncs of a recovery that cuts a tail cost nothing; else the
// temporary directory. An exception here (no folder) ends the run.
const std::string& journal_path() {
  static testing::temp_dir dir{"fuzz-journal",
                               ::access("/dev/shm", W_OK) == 0
                                 ? std::filesystem::path{"/dev/shm"}
                                 : std::filesystem::temp_directory_path()};
  static const std::string file = dir.file("journal");
  return file;
}

struct recovery {
  std::vector<store_write> records;
  uint64_t kept_bytes = 0;
  uint64_t discarded_bytes = 0;
};

// The one call into the journal: what the runtime does at start-up with a
// write-back cache's journal file.
caf::expected<recovery> recover(const std::string& path) {
  auto j = journal::open(path, "fuzz");
  if (!j) return std::move(j.error());
  return recovery{j->recovered(), j->size_bytes(), j->discarded_bytes()};
}

void write_file(const std::string& path, const uint8_t* data, size_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || (size > 0 && ::write(fd, data, size) != static_cast<ssize_t>(size))) {
    std::perror("writing the journal file");
    std::abort();
  }
  ::close(fd);
}

bool same(const std::vector<store_write>& a, const std::vector<store_write>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].key != b[i].key || a[i].bytes != b[i].bytes) return false;
  return true;
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "journal recovery: %s\n", what);
  std::abort();
}

// The whole file, or "" if there is none.
std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  return std::string{std::istreambuf_iterator<char>{in},
                     std::istreambuf_iterator<char>{}};
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& path = journal_path();
  const std::string cut_copy = path + ".discarded";
  ::unlink(cut_copy.c_str());
  write_file(path, data, size);
  const std::string input(reinterpret_cast<const char*>(data), size);
  static const std::string header = journal_records::encode_file_header("fuzz");
  // Nothing a journal ever acknowledged: empty, a header a crash tore, or
  // zeros where a machine crash lost the header's unsynced bytes.
  bool fresh =
    (size < header.size() && header.compare(0, size, input) == 0) ||
    (size <= header.size() && input.find_first_not_of('\0') == std::string::npos);
  auto first = recover(path);
  if (!first) {
    if (!(first.error() == errc::store_failure))
      fail("a refusal that is no store_failure");
    if (fresh) fail("a fresh file was refused");
    if (input.compare(0, header.size(), header) == 0) fail("our own journal was refused");
    if (read_file(path) != input) fail("a refused file was changed");
    if (::access(cut_copy.c_str(), F_OK) == 0) fail("a refused file left a cut copy");
    ::unlink(path.c_str());
    return 0;
  }
  if (fresh) {
    if (read_file(path) != header) fail("a fresh file is not just its header");
    if (!first->records.empty() || first->discarded_bytes != 0)
      fail("a fresh file had records or a cut");
  } else {
    if (first->kept_bytes + first->discarded_bytes != size)
      fail("kept + discarded bytes differ from the file's size");
    if (read_file(path) != input.substr(0, first->kept_bytes))
      fail("the file is not the kept prefix of what it was");
  }
  if (read_file(cut_copy) !=
      (fresh ? std::string{} : input.substr(first->kept_bytes, first->discarded_bytes)))
    fail("the copy of the cut bytes differs from them");
  auto second = recover(path);
  if (!second) fail("the second recovery failed");
  if (second->discarded_bytes != 0 || second->kept_bytes != first->kept_bytes)
    fail("the second recovery cut more off");
  if (!same(first->records, second->records))
    fail("the second recovery found other records");
  ::unlink(path.c_str());
  ::unlink(cut_copy.c_str());
  return 0;
}
