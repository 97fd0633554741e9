#include <karlton/runtime/cache.hpp>

#include "runtime/cache_core.hpp"
#include <karlton/runtime/log.hpp>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include <caf/all.hpp>
#include <caf/send.hpp>

namespace karlton {

namespace detail {

namespace {

// Fails every job still queued on `route`. Safe beside a running shard: the
// queue is multi-consumer, so each job is either run or abandoned, once.
void fail_queued(const shard_route& route, const caf::error& why) {
  while (auto job = route.inbox->pop())
    job->abandon(why);
}

void fail_queued(const shard_route& route) {
  fail_queued(route, make_error(errc::shut_down,
                                "the karlton runtime stopped before the call ran"));
}

} // namespace

namespace {

thread_local karlton::held_doorbells* held_here = nullptr;

// After jobs were pushed on `route`: rings its doorbell unless it is rung.
void ring_doorbell(gate& g, const shard_route& route) {
  if (!route.inbox->claim_doorbell()) return; // rung already; the shard will look
  g.active.fetch_add(1, std::memory_order_seq_cst);
  if (g.closed.load(std::memory_order_seq_cst)) {
    fail_queued(route);
  } else {
    try {
      caf::anon_send(route.actor, doorbell_atom::value);
    } catch (...) {
      // No memory for the message: the shard will not look, so what is
      // queued behind this doorbell fails now instead of waiting forever,
      // and the doorbell is cleared as the shard clears it.
      auto why = make_error(errc::overloaded, "no memory to wake the shard");
      do
        fail_queued(route, why);
      while (route.inbox->release_doorbell());
    }
  }
  g.active.fetch_sub(1, std::memory_order_seq_cst);
}

} // namespace

// Only `submit` holds a doorbell back.
struct doorbell_access {
  static void hold(held_doorbells& b, const std::shared_ptr<gate>& g,
                   const shard_route& route) {
    for (const auto& o : b.held_)
      if (o.route.inbox == route.inbox) return; // one doorbell per shard per ring
    try {
      b.held_.push_back(held_doorbell{g, route});
      if (b.held_.size() == 1 && b.first_held_) b.first_held_();
    } catch (...) { // no memory to hold it or to schedule the ring: ring now
      b.ring();
      ring_doorbell(*g, route);
    }
  }
  static held_doorbells* previous(held_doorbells& b) noexcept { return b.previous_; }
};

void submit(const std::shared_ptr<gate>& gp, const shard_route& route, shard_job* job,
            std::chrono::steady_clock::time_point deadline) {
  auto& g = *gp;
  if (g.closed.load(std::memory_order_acquire)) {
    job->abandon(make_error(errc::shut_down, "the karlton runtime has stopped"));
    return;
  }
  if (!route.inbox->push(job)) {
    // Full: ring what this thread holds (the shard may be waiting for it to
    // make room), then wait for room until the call's deadline.
    ring_held_doorbells();
    while (!route.inbox->push(job)) {
      if (g.closed.load(std::memory_order_acquire)) {
        job->abandon(make_error(errc::shut_down, "the karlton runtime has stopped"));
        return;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        bool waited = deadline != std::chrono::steady_clock::time_point::min();
        job->abandon(make_error(errc::overloaded,
                                std::string{waited ? "the shard's ingress queue stayed "
                                                     "full until the call timed out"
                                                   : "the shard's ingress queue is full "
                                                     "(this caller does not wait)"} +
                                  "; raise ingress-capacity or slow down"));
        return;
      }
      std::this_thread::yield();
    }
  }
  // Queued. If shutdown began, its final drain may already have run: drain
  // ourselves. Otherwise that drain comes after our push: the fences here
  // and after shutdown's `closed` store order each side's store before its
  // load (the push publishes with a release store only).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (g.closed.load(std::memory_order_seq_cst)) return fail_queued(route);
  if (held_here != nullptr)
    doorbell_access::hold(*held_here, gp, route);
  else
    ring_doorbell(g, route);
}

void callback_threw(const char* what) noexcept {
  static std::atomic<uint64_t> count{0};
  auto n = count.fetch_add(1, std::memory_order_relaxed) + 1;
  if ((n & (n - 1)) != 0) return; // the 1st, 2nd, 4th ...: a loop cannot flood the log
  try {
    log_line("karlton: a callback threw (" + std::to_string(n) +
             " so far), ignored: " + what);
  } catch (...) { // no memory for the line: the count goes on
  }
}

void ring_held_doorbells() {
  // Every holder on this thread, not only the innermost: an outer one's
  // jobs may be what the caller is about to wait for.
  for (auto* h = held_here; h != nullptr; h = doorbell_access::previous(*h))
    h->ring();
}

} // namespace detail

held_doorbells::held_doorbells(std::function<void()> first_held)
  : first_held_(std::move(first_held)), previous_(detail::held_here) {
  detail::held_here = this;
}

held_doorbells::~held_doorbells() {
  ring();
  detail::held_here = previous_;
}

held_doorbells* held_doorbells::current() noexcept {
  return detail::held_here;
}

size_t held_doorbells::held() const noexcept {
  return held_.size();
}

void held_doorbells::ring() {
  // Swapped out first: a ring may fail queued jobs inline (the runtime
  // stopped), and their callbacks may call again on this thread.
  auto ringing = std::move(held_);
  held_.clear();
  for (const auto& o : ringing)
    detail::ring_doorbell(*o.g, o.route);
  if (held_.empty()) {
    ringing.clear(); // keep the capacity for the next round
    held_.swap(ringing);
  }
}

std::vector<shard_actor> cache::shards() const {
  std::vector<shard_actor> out;
  for (const auto& r : core_->routes)
    out.push_back(r.actor);
  return out;
}

} // namespace karlton

namespace karlton {

namespace {

caf::error stopped() {
  return make_error(errc::shut_down, "the karlton runtime has stopped");
}

caf::error flusher_silent() {
  return make_error(errc::timeout, "the flusher did not answer in time");
}

// What a failed request to the flusher reports. Once shutdown began, the
// flusher's answer is not a result, except a success, which it gives only for
// writes that are stored.
caf::error flusher_failed(caf::error err, const detail::gate& g) {
  if (g.closed.load(std::memory_order_acquire)) return stopped();
  if (err == caf::sec::request_timeout) return flusher_silent();
  return err;
}

// A force_flush_async waiting for the flusher's answer; `pass` (declared
// after the gate it counts on) is released with the last copy.
struct flush_waiter {
  flush_waiter(std::shared_ptr<detail::gate> g,
               detail::callback_fn<void(caf::expected<caf::unit_t>)> f)
    : gate(std::move(g)), pass(*gate), done(std::move(f)) {}
  std::shared_ptr<detail::gate> gate;
  detail::system_pass pass;
  detail::callback_fn<void(caf::expected<caf::unit_t>)> done;
};

// Asks the flusher of `core` and waits for the answer (rare calls: a
// scoped_actor's cost does not matter here); `if_none` without write-back.
template <class T, class... Ts>
caf::expected<T> ask_flusher(const detail::cache_core& core, T if_none,
                             caf::timespan timeout, Ts... xs) {
  auto& g = *core.runtime_gate;
  detail::system_pass pass{g};
  if (!pass) return stopped();
  if (!core.flusher) return if_none;
  if (detail::on_scheduler_thread(g)) return detail::blocking_refused();
  caf::expected<T> out = flusher_silent();
  {
    caf::scoped_actor self{core.flusher->home_system()};
    self->request(core.flusher, timeout, xs...)
      .receive([&](T& x) { out = std::move(x); },
               [&](caf::error& err) { out = flusher_failed(std::move(err), g); });
  }
  // As in runtime.cpp: do not keep the system's logger alive from this thread.
  caf::logger::set_current_actor_system(nullptr);
  return out;
}

} // namespace

caf::error cache::force_flush(caf::timespan timeout) const {
  auto r =
    ask_flusher<caf::ok_atom>(*core_, caf::ok_atom::value, timeout, flush_atom::value);
  return r ? caf::error{} : std::move(r.error());
}

void cache::force_flush_async_fn(caf::timespan timeout, callback<unit> f) const {
  // The pass is held until the flusher answers, as a blocking force_flush
  // holds it: shutdown clears the flusher's handle and lets the actor system
  // go only after. The answer comes: a drained flusher answers its waiters
  // and a request to a stopped one bounces.
  auto w = std::make_shared<flush_waiter>(core_->runtime_gate, std::move(f));
  if (!w->pass) return w->done(stopped());
  if (!core_->flusher) return w->done(unit{});
  // One short-lived actor per call, to receive the answer: FLUSH is rare.
  // What it needs goes in as spawn arguments: CAF 0.17 runs a function spawned
  // with none through a null shared_ptr<tuple<>> (UBSan: reference binding to
  // null pointer, in init_fun_factory.hpp).
  core_->flusher->home_system().spawn(
    [](caf::event_based_actor* self, const flusher_actor& flusher, caf::timespan wait,
       const std::shared_ptr<flush_waiter>& waiter) {
      self->request(flusher, wait, flush_atom::value)
        .then([waiter](caf::ok_atom) { waiter->done(unit{}); },
              [waiter](caf::error& err) {
                waiter->done(flusher_failed(std::move(err), *waiter->gate));
              });
    },
    core_->flusher, timeout, w);
}

caf::expected<uint64_t> cache::dirty_count() const {
  auto s = flush_stats();
  if (!s) return std::move(s.error());
  return s->dirty;
}

caf::expected<write_stats> cache::flush_stats() const {
  return ask_flusher<write_stats>(*core_, write_stats{}, options().call_timeout,
                                  write_stats_atom::value);
}

caf::error cache::await_peers(std::optional<std::string_view> key) const {
  if (options().distributed != distribution::sync) return caf::none;
  std::vector<shard_actor> asked;
  if (key)
    asked.push_back(shard_for(*key));
  else
    asked = shards();
  // The peer answers within its sync timeout; the margin is for the hops.
  auto wait = options().call_timeout + std::chrono::seconds{5};
  std::vector<std::string> missing;
  caf::error failed;
  // The shards' actor system exists only while the runtime takes calls.
  detail::system_pass pass{*core_->runtime_gate};
  if (!pass) return stopped();
  {
    caf::scoped_actor self{asked.front()->home_system()};
    for (auto& s : asked)
      self->request(s, wait, sync_atom::value)
        .receive(
          [&](std::vector<std::string>& nodes) {
            missing.insert(missing.end(), nodes.begin(), nodes.end());
          },
          [&](caf::error& err) { failed = std::move(err); });
  }
  caf::logger::set_current_actor_system(nullptr);
  if (failed)
    return core_->runtime_gate->closed.load(std::memory_order_acquire) ? stopped()
                                                                       : failed;
  if (missing.empty()) return caf::none;
  std::sort(missing.begin(), missing.end());
  missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
  std::string names;
  for (auto& n : missing)
    names += (names.empty() ? "" : ", ") + n;
  return make_error(errc::timeout,
                    "applied on this node, but not acknowledged in time by: " + names +
                      " (a node that missed it clears when it reconnects)");
}

} // namespace karlton
