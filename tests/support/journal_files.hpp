// Helpers of the journal's tests: writes as text, numbered as the flusher
// numbers them, and the file's raw bytes (read, appended, changed, as hex).
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "stores/journal.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton::testing {

// The cache whose journal the tests open.
inline const std::string owner = "test";

inline store_write put(std::string key, std::string bytes) {
  return store_write{std::move(key), std::move(bytes)};
}

inline store_write del(std::string key) {
  return store_write{std::move(key), std::nullopt};
}

// Records as text, so a failed comparison shows what differs.
inline std::vector<std::string> shown(const std::vector<store_write>& ws) {
  std::vector<std::string> out;
  for (const auto& w : ws)
    out.push_back(w.is_delete() ? "del " + w.key : "put " + w.key + "=" + *w.bytes);
  return out;
}

// Numbers writes as the flusher does: rising, never twice in a process.
inline std::vector<journal_write> numbered(const std::vector<store_write>& ws) {
  static uint64_t next = 1;
  std::vector<journal_write> out;
  for (const auto& w : ws)
    out.push_back(journal_write{next++, w});
  return out;
}

template <class... Batches>
std::vector<store_write> concat(const Batches&... batches) {
  std::vector<store_write> out;
  (out.insert(out.end(), batches.begin(), batches.end()), ...);
  return out;
}

inline journal open_ok(const std::string& path) {
  auto j = journal::open(path, owner);
  if (!j) FAIL(describe(j.error()));
  return std::move(*j);
}

inline std::string contents(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, {}};
}

inline std::string hex(const std::string& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 0xF];
  }
  return out;
}

inline std::string unhex(const std::string& digits) {
  std::string out;
  for (size_t i = 0; i + 1 < digits.size(); i += 2)
    out += static_cast<char>(std::stoi(digits.substr(i, 2), nullptr, 16));
  return out;
}

inline uint64_t file_size(const std::string& path) {
  return std::filesystem::file_size(path);
}

inline void append_raw(const std::string& path, const std::string& bytes) {
  std::ofstream out{path, std::ios::binary | std::ios::app};
  out << bytes;
}

inline void flip_byte(const std::string& path, uint64_t offset) {
  std::fstream f{path, std::ios::binary | std::ios::in | std::ios::out};
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x5A));
}

} // namespace karlton::testing
