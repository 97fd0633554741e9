#include <karlton/messages/value.hpp>

#include "messages/value_slot.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

namespace karlton {

// Layout: [header 20 B][key bytes][value bytes], one malloc. The header is kept
// at 20 B so a 16 B key + 100 B value (the benchmark's entry) fits a 144 B
// glibc chunk: see the memory figures in the README.
struct value::block {
  std::atomic<uint32_t> refs;
  uint32_t key_size;
  uint32_t value_size;
  uint32_t hash;
  uint32_t born;
  char* data() noexcept { return reinterpret_cast<char*>(this + 1); }
};
static_assert(sizeof(std::atomic<uint32_t>) == 4);

value::value(const value& other) noexcept : block_(other.block_) {
  if (block_) block_->refs.fetch_add(1, std::memory_order_relaxed);
}

value::~value() {
  if (block_ && block_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    block_->~block();
    std::free(block_);
  }
}

value value::make(std::string_view key, std::string_view bytes) {
  return make(key, bytes, hash_key(key));
}

value value::make(std::string_view key, std::string_view bytes, uint64_t key_hash) {
  auto mem = std::malloc(sizeof(block) + key.size() + bytes.size());
  if (!mem) throw std::bad_alloc{};
  auto b = new (mem) block{{1},
                           static_cast<uint32_t>(key.size()),
                           static_cast<uint32_t>(bytes.size()),
                           static_cast<uint32_t>(key_hash),
                           0};
  if (!key.empty()) std::memcpy(b->data(), key.data(), key.size());
  if (!bytes.empty()) std::memcpy(b->data() + key.size(), bytes.data(), bytes.size());
  return value{b};
}

std::string_view value::key() const noexcept {
  if (!block_) return {};
  return {block_->data(), block_->key_size};
}

std::string_view value::bytes() const noexcept {
  if (!block_) return {};
  return {block_->data() + block_->key_size, block_->value_size};
}

uint32_t value::table_hash() const noexcept {
  return block_ ? block_->hash : 0;
}

uint32_t value::born_ms() const noexcept {
  return block_ ? block_->born : 0;
}

void value::set_born_ms(uint32_t ms) noexcept {
  if (block_) block_->born = ms;
}

bool value::unique() const noexcept {
  return block_ && block_->refs.load(std::memory_order_acquire) == 1;
}

value value_slot::exchange(value& slot, value v) noexcept {
  auto old = slot.block_; // only this thread changes it: no locked exchange
  __atomic_store_n(&slot.block_, v.block_, __ATOMIC_RELEASE);
  v.block_ = nullptr;
  return value{old};
}

value value_slot::load(const value& slot) noexcept {
  auto b = __atomic_load_n(&slot.block_, __ATOMIC_ACQUIRE);
  if (b) b->refs.fetch_add(1, std::memory_order_relaxed);
  return value{b};
}

} // namespace karlton
