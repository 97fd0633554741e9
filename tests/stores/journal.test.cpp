// The write-back journal: records survive a reopen in order, a torn or corrupt
// tail is cut off, and failures name the file.
#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "stores/journal.hpp"
#include "support/journal_files.hpp"
#include "support/sync_faults.hpp"
#include "support/temp_dir.hpp"
#include <karlton/messages/errors.hpp>

#include <unistd.h>

using namespace karlton;
using karlton::testing::append_raw;
using karlton::testing::concat;
using karlton::testing::contents;
using karlton::testing::del;
using karlton::testing::failing_syncs;
using karlton::testing::file_size;
using karlton::testing::flip_byte;
using karlton::testing::hex;
using karlton::testing::numbered;
using karlton::testing::open_ok;
using karlton::testing::owner;
using karlton::testing::put;
using karlton::testing::shown;
using karlton::testing::sync_faults;
using karlton::testing::unhex;

TEST_CASE("a reopened journal recovers every appended record in order", "[journal]") {
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  using namespace std::string_literals;
  std::vector<store_write> first{put("a", "1"), put("empty", ""), del("a")};
  std::vector<store_write> second{put("bin\0key"s, "\0\x01\xff\0tail"s), del("")};
  std::vector<store_write> third{put("a", std::string(100'000, 'x'))};
  {
    auto j = open_ok(path);
    CHECK(j.recovered().empty());
    CHECK(j.path() == path);
    REQUIRE(j.append(numbered(first)) == caf::none);
    REQUIRE(j.append(numbered({})) == caf::none);
    REQUIRE(j.append(numbered(second)) == caf::none);
    REQUIRE(j.append(numbered(third)) == caf::none);
    CHECK(j.records() == 6);
    CHECK(j.size_bytes() == file_size(path));
  }
  auto j = open_ok(path);
  auto all = concat(first, second, third);
  CHECK(shown(j.recovered()) == shown(all));
  CHECK(j.recovered()[3].key == "bin\0key"s);
  CHECK(*j.recovered()[3].bytes == "\0\x01\xff\0tail"s);
  CHECK(j.records() == 6);
  CHECK(j.size_bytes() == file_size(path));
  CHECK(j.discarded_bytes() == 0);
}

TEST_CASE("the record format is stable", "[journal]") {
  // Journals outlive binaries: a new build must read an old file. The CRC is
  // zlib's crc32 (Python: zlib.crc32(header[:20] + key + value)).
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  auto j = open_ok(path);
  REQUIRE(j.append({{1, put("k", "v")},
                    {2, del("gone")},
                    {3, put("a longer key", "a value of more than eight bytes")}}) ==
          caf::none);
  REQUIRE(j.mark_stored({1, 2}) == caf::none);
  // The file's header: "karltonJ", the owner's length and name, their CRC.
  // Then one record a line: magic, type, reserved, key length, value length,
  // number, CRC, key, value. The last is a stored mark of writes 1 and 2.
  // clang-format off
  CHECK(hex(contents(path)) ==
        "6b61726c746f6e4a" "04000000" "74657374" "ecad2ff6"
        "a8" "01" "0000" "01000000" "01000000" "0100000000000000" "be9d32eb" "6b" "76"
        "a8" "02" "0000" "04000000" "00000000" "0200000000000000" "f8cb3fae" "676f6e65"
        "a8" "01" "0000" "0c000000" "20000000" "0300000000000000" "cec7aa42"
          "61206c6f6e676572206b6579"
          "612076616c7565206f66206d6f7265207468616e206569676874206279746573"
        "a8" "03" "0000" "00000000" "10000000" "0000000000000000" "c3b3eb18"
          "01000000000000000200000000000000");
  // clang-format on
}

TEST_CASE("a journal of format 1, before stored marks, is still replayed whole",
          "[journal]") {
  // What an older binary left at a crash: the three records above without
  // their numbers. A new build must replay them, and may append after them.
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  // clang-format off
  append_raw(path, unhex(
    "a7" "01" "0000" "01000000" "01000000" "4643063c" "6b" "76"
    "a7" "02" "0000" "04000000" "00000000" "1e3fdcd2" "676f6e65"
    "a7" "01" "0000" "0c000000" "20000000" "64992322" "61206c6f6e676572206b6579"
      "612076616c7565206f66206d6f7265207468616e206569676874206279746573"));
  // clang-format on
  std::vector<std::string> old{"put k=v", "del gone",
                               "put a longer key=a value of more than eight bytes"};
  {
    auto j = open_ok(path);
    CHECK(shown(j.recovered()) == old);
    CHECK(j.discarded_bytes() == 0);
    CHECK(j.size_bytes() == file_size(path));
    REQUIRE(j.append({{1, put("new", "1")}}) == caf::none);
    REQUIRE(j.mark_stored({1}) == caf::none); // no old write has a number
  }
  auto j = open_ok(path);
  CHECK(shown(j.recovered()) == old);
  CHECK(j.already_stored() == 1);
  CHECK(j.records() == 4);
  // Emptied after its replay, it gets the header that names its cache.
  REQUIRE(j.reset() == caf::none);
  CHECK(hex(contents(path)) == "6b61726c746f6e4a"
                               "04000000"
                               "74657374"
                               "ecad2ff6");
}

TEST_CASE("a replay leaves out each write a stored mark names and the older "
          "writes of its key",
          "[journal]") {
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  {
    auto j = open_ok(path);
    REQUIRE(j.append({{1, put("a", "1")}, {2, put("b", "1")}, {3, put("a", "2")}}) ==
            caf::none);
    // The store took a=1; the mark rides on the next group commit.
    REQUIRE(j.append({{4, del("c")}}, {1}) == caf::none);
  }
  {
    auto j = open_ok(path);
    CHECK(shown(j.recovered()) ==
          std::vector<std::string>{"put b=1", "put a=2", "del c"});
    CHECK(j.already_stored() == 1);
    CHECK(j.records() == 4);
    // The store took a=2 (so a=1 is moot too), b=1 and the delete of c; b
    // has a newer write since, which no mark names. A mark alone, unsynced.
    REQUIRE(j.append({{5, put("b", "2")}}) == caf::none);
    REQUIRE(j.mark_stored({3, 2, 4, 99}) == caf::none); // 99: no such write
  }
  {
    auto j = open_ok(path);
    CHECK(shown(j.recovered()) == std::vector<std::string>{"put b=2"});
    CHECK(j.already_stored() == 4);
    CHECK(j.records() == 5);
    CHECK(j.discarded_bytes() == 0);
    // Emptied, as the runtime does after every replay.
    REQUIRE(j.reset() == caf::none);
    CHECK(j.already_stored() == 0);
  } // closed: a journal file has one holder at a time
  CHECK(open_ok(path).recovered().empty());
}

TEST_CASE("reset empties the journal and a reopened one finds nothing", "[journal]") {
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  REQUIRE(open_ok(path).append(numbered({put("a", "1"), put("b", "2")})) == caf::none);
  {
    auto j = open_ok(path);
    CHECK(j.recovered().size() == 2);
    REQUIRE(j.reset() == caf::none);
    CHECK(j.recovered().empty());
    CHECK(j.records() == 0);
    CHECK(j.empty());
    CHECK(j.size_bytes() == file_size(path)); // the header stays
  }
  {
    auto j = open_ok(path);
    CHECK(j.recovered().empty());
    CHECK(j.records() == 0);
    REQUIRE(j.append(numbered({put("c", "3")})) == caf::none);
  }
  CHECK(shown(open_ok(path).recovered()) == std::vector<std::string>{"put c=3"});
}

TEST_CASE("a torn or corrupt tail is cut off and later appends survive a reopen",
          "[journal]") {
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  std::vector<store_write> acked{put("a", "1"), del("b"), put("c", "")};
  std::vector<store_write> last{put("d", "a value long enough to tear")};
  uint64_t acked_size = 0;
  {
    auto j = open_ok(path);
    REQUIRE(j.append(numbered(acked)) == caf::none);
    acked_size = j.size_bytes();
    REQUIRE(j.append(numbered(last)) == caf::none);
  }
  auto full_size = file_size(path);
  auto expected = acked;
  SECTION("cut in the middle of the last value") {
    std::filesystem::resize_file(path, full_size - 5);
  }
  SECTION("cut inside the last header") {
    std::filesystem::resize_file(path, acked_size + 7);
  }
  SECTION("a flipped byte in the last value") {
    flip_byte(path, full_size - 3);
  }
  SECTION("a flipped length in the last header") {
    flip_byte(path, acked_size + 4);
  }
  SECTION("garbage after the last record") {
    append_raw(path, "\xa7\x01garbage that is no record");
    expected = concat(acked, last);
  }
  SECTION("zeros after the last record, as a file grown without its data") {
    append_raw(path, std::string(4096, '\0'));
    expected = concat(acked, last);
  }
  auto kept_size = expected.size() == acked.size() ? acked_size : full_size;
  auto cut = contents(path).substr(kept_size);
  {
    auto j = open_ok(path);
    CHECK(shown(j.recovered()) == shown(expected));
    CHECK(j.records() == expected.size());
    CHECK(j.size_bytes() == kept_size);
    CHECK(file_size(path) == kept_size);
    CHECK(j.discarded_bytes() == cut.size());
    // Damage mid-file looks the same and takes acknowledged records with
    // it: what is cut is kept beside the journal, never only dropped.
    CHECK(contents(path + ".discarded") == cut);
    REQUIRE(j.append(numbered({put("after", "reopen")})) == caf::none);
  }
  auto j = open_ok(path);
  CHECK(shown(j.recovered()) ==
        shown(concat(expected, std::vector{put("after", "reopen")})));
  CHECK(j.discarded_bytes() == 0);
  CHECK(contents(path + ".discarded") == cut);
}

TEST_CASE("ten thousand records in a hundred batches round trip", "[journal]") {
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  std::vector<store_write> all;
  {
    auto j = open_ok(path);
    for (int b = 0; b < 100; ++b) {
      std::vector<store_write> batch;
      for (int i = 0; i < 100; ++i) {
        auto n = b * 100 + i;
        auto key = "key-" + std::to_string(n);
        batch.push_back(n % 7 == 0 ? del(key) : put(key, std::string(n % 300, char(n))));
      }
      REQUIRE(j.append(numbered(batch)) == caf::none);
      all.insert(all.end(), batch.begin(), batch.end());
    }
    CHECK(j.records() == 10'000);
  }
  auto j = open_ok(path);
  CHECK(j.records() == 10'000);
  CHECK(j.discarded_bytes() == 0);
  CHECK(shown(j.recovered()) == shown(all));
}

TEST_CASE("a journal in a missing directory fails with store_failure", "[journal]") {
  testing::temp_dir dir{"journal"};
  auto path = dir.file("no/such/dir/wal");
  auto j = journal::open(path, owner);
  REQUIRE_FALSE(j);
  CHECK(j.error() == errc::store_failure);
  auto text = describe(j.error());
  CHECK(text.find(path) != std::string::npos);
  CHECK(text.find("No such file or directory") != std::string::npos);
}

TEST_CASE("a file is held by one journal at a time", "[journal]") {
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  auto first = open_ok(path);
  auto second = journal::open(path, owner);
  REQUIRE_FALSE(second);
  CHECK(second.error() == errc::store_failure);
  CHECK(describe(second.error()).find("held by another journal") != std::string::npos);
  // A move hands the file over; the lock goes with it.
  auto moved = std::move(first);
  REQUIRE(moved.append(numbered({put("k", "v")})) == caf::none);
  CHECK_FALSE(journal::open(path, owner));
  { auto gone = std::move(moved); }
  CHECK(shown(open_ok(path).recovered()) == std::vector<std::string>{"put k=v"});
}

TEST_CASE("a rewrite keeps exactly the given records and repairs a failed sync",
          "[journal]") {
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  sync_faults faults;
  {
    auto j = open_ok(path);
    REQUIRE(j.append(numbered({put("a", "1"), put("b", "2")})) == caf::none);
    failing_syncs = 1;
    CHECK(j.append(numbered({put("a", "3")})) != caf::none);
    // Broken: no later append is trusted, even with the disk back.
    CHECK(j.append(numbered({put("c", "4")})) != caf::none);
    REQUIRE(j.rewrite(numbered({put("a", "3"), put("c", "4")})) == caf::none);
    CHECK(j.records() == 2);
    CHECK(j.size_bytes() == file_size(path));
    REQUIRE(j.append(numbered({del("b")})) == caf::none);
    CHECK_FALSE(std::filesystem::exists(path + ".rewrite"));
    CHECK_FALSE(journal::open(path, owner)); // the new file is held as the old one was
  }
  CHECK(shown(open_ok(path).recovered()) ==
        std::vector<std::string>{"put a=3", "put c=4", "del b"});
}

TEST_CASE("a failed rewrite leaves the old journal in place", "[journal]") {
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  sync_faults faults;
  {
    auto j = open_ok(path);
    REQUIRE(j.append(numbered({put("a", "1")})) == caf::none);
    failing_syncs = 1;
    CHECK(j.rewrite(numbered({put("z", "9")})) != caf::none);
    CHECK_FALSE(std::filesystem::exists(path + ".rewrite"));
    REQUIRE(j.append(numbered({put("b", "2")})) ==
            caf::none); // a failed rewrite breaks nothing
  }
  CHECK(shown(open_ok(path).recovered()) ==
        std::vector<std::string>{"put a=1", "put b=2"});
}

TEST_CASE("a cut the journal cannot keep beside it is still cut and says why",
          "[journal]") {
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  {
    auto j = open_ok(path);
    REQUIRE(j.append(numbered({put("a", "1")})) == caf::none);
  }
  auto kept = file_size(path);
  append_raw(path, "\xa8\x01 torn");
  // Where the copy would go, something it cannot write (a full disk, a
  // read-only directory and a FIFO fail alike).
  std::filesystem::create_directory(path + ".discarded");
  // The cut must not refuse the start for that: on a full disk the cache
  // could not be made until an operator freed space.
  auto j = open_ok(path);
  CHECK(shown(j.recovered()) == std::vector<std::string>{"put a=1"});
  CHECK(j.discarded_bytes() == 7);
  CHECK(file_size(path) == kept);
  CHECK_FALSE(j.cut_copy_error().empty());
}

TEST_CASE("a file that is no journal is refused and left as it was", "[journal]") {
  // A journal path pointed at the store's SQLite file emptied it: a file
  // that starts with no whole record was cut as a torn tail.
  testing::temp_dir dir{"journal"};
  auto path = dir.file("store.db");
  std::string database = std::string("SQLite format 3\0", 16) + std::string(4080, 'x');
  SECTION("a database") {}
  SECTION("a torn record of no header, alone") {
    database = "\xa8\x01 a torn first record";
  }
  SECTION("a header whose CRC does not match") {
    database = unhex("6b61726c746f6e4a"
                     "04000000"
                     "74657374"
                     "ecad2ff7");
  }
  append_raw(path, database);
  auto j = journal::open(path, owner);
  REQUIRE_FALSE(j);
  CHECK(j.error() == errc::store_failure);
  CHECK(describe(j.error()).find("is not a karlton journal") != std::string::npos);
  CHECK(contents(path) == database);
  CHECK_FALSE(std::filesystem::exists(path + ".discarded"));
}

TEST_CASE("another cache's journal is refused and left for that cache", "[journal]") {
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  REQUIRE(open_ok(path).append(numbered({put("a", "1")})) == caf::none);
  auto before = contents(path);
  auto other = journal::open(path, "sessions");
  REQUIRE_FALSE(other);
  CHECK(other.error() == errc::store_failure);
  CHECK(describe(other.error())
          .find("holds the writes of cache 'test', not of "
                "'sessions'") != std::string::npos);
  CHECK(contents(path) == before);
  CHECK(shown(open_ok(path).recovered()) == std::vector<std::string>{"put a=1"});
}

TEST_CASE("an empty file, or a header a crash tore, starts a journal", "[journal]") {
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  std::string header = unhex("6b61726c746f6e4a"
                             "04000000"
                             "74657374"
                             "ecad2ff6");
  SECTION("none") {}
  SECTION("empty") {
    append_raw(path, "");
  }
  SECTION("torn in the magic") {
    append_raw(path, header.substr(0, 5));
  }
  SECTION("torn in the CRC") {
    append_raw(path, header.substr(0, header.size() - 1));
  }
  {
    auto j = open_ok(path);
    CHECK(j.recovered().empty());
    CHECK(j.empty());
    CHECK(contents(path) == header);
    REQUIRE(j.append(numbered({put("k", "v")})) == caf::none);
  }
  CHECK(shown(open_ok(path).recovered()) == std::vector<std::string>{"put k=v"});
}

TEST_CASE("a journal's files are for its user's eyes only", "[journal]") {
  // The cache's values are in them, whatever the umask lets others read.
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  auto only_owner = [](const std::string& file) {
    return (std::filesystem::status(file).permissions() & std::filesystem::perms::all) ==
           (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  };
  auto j = open_ok(path);
  CHECK(only_owner(path));
  REQUIRE(j.rewrite(numbered({put("k", "v")})) == caf::none);
  CHECK(only_owner(path));
}

TEST_CASE("a header's worth of zeros starts a journal", "[journal]") {
  // A machine crash can leave a new file's unsynced header as zeros.
  testing::temp_dir dir{"journal"};
  auto path = dir.file("wal");
  append_raw(path, std::string(20, '\0')); // the header of "test" is 20 bytes
  {
    auto j = open_ok(path);
    CHECK(j.empty());
  }
  CHECK(hex(contents(path)) == "6b61726c746f6e4a"
                               "04000000"
                               "74657374"
                               "ecad2ff6");
  append_raw(path, std::string(1, '\0')); // zeros after a header: a torn tail
  CHECK(open_ok(path).discarded_bytes() == 1);
}
