// The immutable, shared value buffer that shards store and hand out.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/none.hpp>

namespace karlton {

/// 64-bit hash of a key. Its high half routes the key to a shard (see
/// base/routing.hpp), its low half indexes the shard's table, so the two
/// choices stay independent. Keyed SipHash-1-3 under a key drawn once per
/// process (or derived from the environment variable `KARLTON_HASH_SEED`,
/// for runs that must repeat exactly): clients cannot choose keys that
/// collide, and no hash is ever sent to another process.
uint64_t hash_key(std::string_view key) noexcept;

/// The hasher of every unordered container keyed by what clients send
/// (keys, names): `hash_key`, where `std::hash` would let them pick keys that
/// share a bucket.
struct key_hasher {
  /// `hash_key(key)`.
  size_t operator()(std::string_view key) const noexcept { return hash_key(key); }
};

/// An immutable key/value pair in one reference-counted allocation.
///
/// Shards store a `value` and hand the same buffer to every reader: a hit
/// costs one atomic increment, never a copy of the bytes (the prototype in
/// DESIGN.md lost 3x to copying values into replies). The key travels with its
/// bytes, so a `value` is also what a put sends.
///
/// A default-constructed `value` is empty and stands for "not cached".
/// @threadsafe handles may be copied and read from any thread.
class value {
public:
  /// Empty: "not cached".
  value() noexcept = default;
  /// Shares `other`'s buffer (one atomic increment, no copy of the bytes).
  value(const value& other) noexcept;
  /// Takes `other`'s buffer; `other` is left empty.
  value(value&& other) noexcept : block_(other.block_) { other.block_ = nullptr; }
  /// Shares (or takes) `other`'s buffer, releasing its own.
  value& operator=(value other) noexcept {
    std::swap(block_, other.block_);
    return *this;
  }
  ~value();

  /// Copies `key` and `bytes` into one new buffer.
  static value make(std::string_view key, std::string_view bytes);
  /// As above, with `key_hash == hash_key(key)` already computed by the caller.
  static value make(std::string_view key, std::string_view bytes, uint64_t key_hash);

  /// False when empty (a miss).
  explicit operator bool() const noexcept { return block_ != nullptr; }
  /// The key; valid as long as a handle to this buffer lives. Empty if empty.
  std::string_view key() const noexcept;
  /// The value's bytes; valid as long as a handle to this buffer lives.
  /// Empty if empty.
  std::string_view bytes() const noexcept;
  /// A copy of `bytes()`, which outlives the handle.
  std::string str() const { return std::string{bytes()}; }

  /// Bytes this pair counts against `max-bytes`: key plus value.
  size_t charge() const noexcept { return key().size() + bytes().size(); }

  /// The low half of `hash_key(key())`, computed once at `make`.
  uint32_t table_hash() const noexcept;

  /// The buffer's birth time, in ms of the runtime's clock modulo 2^32 (ages
  /// are exact up to 49 days): when the owning shard stored it. Readers of
  /// the shard's table may read it (it was set before the value was published).
  uint32_t born_ms() const noexcept;
  /// Sets the birth time `born_ms` returns: the owning shard only, on a buffer
  /// nobody else holds (`unique`), before it stores it.
  void set_born_ms(uint32_t ms) noexcept;

  /// True if no other handle shares this buffer.
  bool unique() const noexcept;

  /// Same buffer, or both non-empty with equal keys and bytes.
  friend bool operator==(const value& x, const value& y) noexcept {
    return x.block_ == y.block_ ||
           (x && y && x.key() == y.key() && x.bytes() == y.bytes());
  }
  /// Not `==`.
  friend bool operator!=(const value& x, const value& y) noexcept { return !(x == y); }

private:
  friend struct value_slot; // atomic access for lock-free readers (internal)
  struct block;
  explicit value(block* b) noexcept : block_(b) {}
  block* block_ = nullptr;
};

/// Serializes a value as its key and bytes (for the network and for tests).
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, value& x) {
  std::string key{x.key()};
  std::string bytes{x.bytes()};
  auto rebuild = caf::meta::load_callback([&]() -> caf::error {
    x = bytes.empty() && key.empty() ? value{} : value::make(key, bytes);
    return caf::none;
  });
  return f(caf::meta::type_name("karlton::value"), key, bytes, rebuild);
}

} // namespace karlton
