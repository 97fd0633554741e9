#include "actors/read_side.hpp"

#include "base/rcu.hpp"

namespace karlton {

namespace {

// A thread's stripe: handed out once per thread, so two threads share a
// stripe only when more than `stripe_count` read.
unsigned this_stripe() {
  static std::atomic<unsigned> next{0};
  thread_local unsigned stripe = next.fetch_add(1, std::memory_order_relaxed);
  return stripe;
}

} // namespace

read_side::read_side(std::shared_ptr<const clock> time_source, read_leases leases)
  : time_source_(time_source ? std::move(time_source) : std::make_shared<steady_clock>()),
    leases_(std::move(leases)), lapses_serve_(leases_.lapses_serve()) {}

read_side::hit read_side::read(std::string_view key, uint32_t hash) noexcept {
  entry_table::found f;
  int64_t lease_until = 0;
  int64_t capped_for = not_capped;
  uint64_t unmarks = 0;
  {
    rcu::read_section section;
    if (!open_.load(std::memory_order_acquire)) return {};
    // The lease as it was before the table was read: a lease renewed while
    // we read (after a repair cleared the shard) must not vouch for a value
    // read before the clear. Likewise the mark: a reader that sees it sees the
    // caps made before it.
    if (leases_) lease_until = leases_.until_ticks();
    if (lapses_serve_) {
      unmarks = unmarks_.load(std::memory_order_acquire);
      capped_for = capped_for_.load(std::memory_order_acquire);
    }
    f = table.read(key, hash);
  } // holding our own reference now: the value outlives the section
  if (!f.val) return {};
  // The time, for the lease, the expiry and the age served (about 30 ns
  // here; sampling the ages of some hits instead skewed the percentiles
  // toward the values that read it anyway: review of 7 Dec).
  auto now = time_source_->now();
  // Lapsed: the shard decides (clears, caps, withholds), unless it capped every
  // entry for this lapse and nothing went in uncapped since, the table read
  // included (it counts that before the write: seen the write, seen the count).
  if (leases_ && now.time_since_epoch().count() > lease_until &&
      (capped_for != lease_until || unmarks_.load(std::memory_order_acquire) != unmarks))
    return {};
  auto now_ms = to_ms(now);
  if (f.expiry_ms != entry::never && now_ms >= f.expiry_ms)
    return {}; // expired: the shard removes it, or serves it stale on a load error
  auto& s = stripes_[this_stripe() % stripe_count];
  // The hit count is also the position in the stripe's buffer: per stripe
  // of this shard, so every shard's buffer fills and asks for its drain.
  auto position = s.hits.fetch_add(1, std::memory_order_relaxed);
  auto slot = position % buffer_length;
  // Stored before the record, which publishes it.
  s.ages[slot].store(static_cast<uint32_t>(now_ms) - f.val.born_ms(),
                     std::memory_order_relaxed);
  // Lossy by design: a slot not drained yet is overwritten. Tagged, so the
  // shard skips a record whose entry was reused for another key meanwhile.
  auto record = (uint64_t{entry::tag_of(hash)} << 32) | (uint64_t{f.id} + 1);
  s.recent[slot].store(record, std::memory_order_release);
  bool drain = false;
  if ((position + 1) % buffer_length == 0) {
    // Pairs with the fence in `stop_draining`: either the shard sees this
    // hit, or this reader sees that the shard stopped and asks.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    drain = !drain_asked_.exchange(true, std::memory_order_relaxed);
  }
  return {std::move(f.val), drain};
}

bool read_side::stop_draining() noexcept {
  drain_asked_.store(false, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // A reader that filled its buffer before the store saw the flag raised and
  // did not ask: look once more, and take the question back if one did.
  for (auto& s : stripes_)
    if (s.hits.load(std::memory_order_relaxed) != s.drained_at)
      return drain_asked_.exchange(true, std::memory_order_relaxed);
  return true;
}

uint64_t read_side::hits() const noexcept {
  uint64_t n = 0;
  for (auto& s : stripes_)
    n += s.hits.load(std::memory_order_relaxed);
  return n;
}

} // namespace karlton
