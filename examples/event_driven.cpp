// Event-driven invalidation: entries name the events that make them stale,
// and emitting an event removes them.
//
// This replays the guide's event-driven demonstration with karlton. A user's
// profile depends on the events user_updated and user_deleted, the user's
// posts on user_updated, post_created and post_deleted; both are read (hits),
// user_updated is emitted, and both are misses. The stats are the guide's
// (size, hits, misses, invalidations, hit rate) plus how many entries events
// invalidated. Then two things the guide's cache has but does not show:
//   - a subscriber (the guide's subscribe_to_event) hears the event and its
//     data; the invalidation itself uses only the event's name;
//   - an event reaches every cache of the runtime: here one cache per data
//     type ('profiles', 'posts'), each with its own entries, and one emit
//     invalidates both. `emit` returns an invalidation_summary once every dependent is
//     gone from every shard; the bus's counters close the program.
//
// "[CACHE]" lines come from each cache's removal callback, which runs on the
// shard threads during the invalidation; they are collected and printed sorted once
// `emit` has returned, and the subscriber (on a thread of its own) is waited
// for, so every run prints the same.
//
// Run it: scripts/run event_driven
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <iomanip>
#include <iostream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "examples/example_support.hpp"
#include <karlton/messages/events.hpp>
#include <karlton/messages/ttl.hpp>
#include <karlton/messages/value.hpp>
#include <karlton/runtime/runtime.hpp>

using examples::or_throw;
using examples::shown;

namespace {

constexpr auto profile_123 = R"({"name": "John", "email": "john@example.com"})";
constexpr auto posts_123 = R"(["Post 1", "Post 2", "Post 3"])";

// The keys removed by invalidation, by cache, as the shards report them.
class removal_log {
public:
  /// Options for a cache called `name` that report its invalidations here.
  karlton::cache_options options_for(karlton::runtime& rt, const std::string& name) {
    auto opts = rt.default_options(name);
    // A fixed shard count (not one per core) keeps the output the same on
    // every machine; 4 spreads these few keys over more than one shard.
    opts.shards = 4;
    opts.on_removal = [this, name](const karlton::value& v, karlton::removal_cause why) {
      if (why != karlton::removal_cause::explicit_erase) return;
      std::lock_guard<std::mutex> guard{mtx_};
      lines_.push_back("[CACHE " + name + "] Invalidated key: " + std::string{v.key()});
    };
    return opts;
  }

  /// Prints what was logged since the last call, sorted (shards run in
  /// parallel, so the order they removed in varies).
  void print() {
    std::lock_guard<std::mutex> guard{mtx_};
    std::sort(lines_.begin(), lines_.end());
    for (const auto& line : lines_)
      std::cout << line << '\n';
    lines_.clear();
  }

private:
  std::mutex mtx_;
  std::vector<std::string> lines_;
};

void print_stats(const std::string& label, const karlton::cache_stats& s) {
  std::cout << label << ": {size: " << s.entries << ", hits: " << s.hits
            << ", misses: " << s.misses << ", invalidations: " << s.invalidations
            << ", hit_rate: " << std::fixed << std::setprecision(2) << s.hit_rate()
            << "}; invalidated_by_event: " << s.invalidated_by_event << '\n';
}

void print_summary(const karlton::invalidation_summary& p) {
  std::cout << "invalidation_summary: {removed: " << p.removed << ", depth: " << p.depth
            << ", subscribers_called: " << p.subscribers_called << "}\n";
}

karlton::invalidation_summary emit(karlton::runtime& rt, removal_log& log,
                                   const std::string& event, const std::string& data) {
  std::cout << "[EVENT] Emitting event: " << event << ' ' << data << '\n';
  auto summary = or_throw(rt.emit(event, data));
  log.print(); // emit has returned: every shard has removed what it had to
  return summary;
}

// The guide's demonstration: one cache holds both entries.
void the_guide(karlton::runtime& rt, removal_log& log) {
  auto users = or_throw(rt.create_cache(log.options_for(rt, "users")));
  std::cout << "=== Event-Driven Cache Demonstration ===\n";
  or_throw(
    users.put("user_profile_123", profile_123, karlton::ttl::never(),
              karlton::dependencies{}.on_events({"user_updated", "user_deleted"})));
  or_throw(users.put(
    "user_posts_123", posts_123, karlton::ttl::never(),
    karlton::dependencies{}.on_events({"user_updated", "post_created", "post_deleted"})));
  std::cout << "Profile: " << shown(or_throw(users.get("user_profile_123"))) << '\n';
  std::cout << "Posts: " << shown(or_throw(users.get("user_posts_123"))) << '\n';
  emit(rt, log, "user_updated", R"({"user_id": "123"})");
  std::cout << "Profile after update: " << shown(or_throw(users.get("user_profile_123")))
            << '\n';
  std::cout << "Posts after update: " << shown(or_throw(users.get("user_posts_123")))
            << '\n';
  print_stats("Cache stats", or_throw(users.stats()));
}

// A subscriber, and one emit reaching two caches.
void every_cache(karlton::runtime& rt, removal_log& log) {
  std::cout
    << "\n=== A subscriber, and one event for every cache ===\n"
       "(caches 'profiles' and 'posts', one per data type, on the same runtime)\n";
  auto profiles = or_throw(rt.create_cache(log.options_for(rt, "profiles")));
  auto posts = or_throw(rt.create_cache(log.options_for(rt, "posts")));

  // Shared with the handler, which the runtime keeps as long as it runs.
  struct hearing {
    std::mutex mtx;
    std::condition_variable cv;
    std::vector<std::string> lines;
  };
  auto heard = std::make_shared<hearing>();
  or_throw(rt.subscribe(
    "user_updated", [heard](const std::string& event, const std::string& data) {
      std::lock_guard<std::mutex> guard{heard->mtx};
      heard->lines.push_back("[SUBSCRIBER] Heard " + event + " with data " + data);
      heard->cv.notify_all();
    }));
  std::cout << "subscribed to user_updated\n";

  or_throw(
    profiles.put("user_profile_123", profile_123, karlton::ttl::never(),
                 karlton::dependencies{}.on_events({"user_updated", "user_deleted"})));
  or_throw(
    profiles.put("user_profile_456", R"({"name": "Jane", "email": "jane@example.com"})",
                 karlton::ttl::never(),
                 karlton::dependencies{}.on_events({"user_updated", "user_deleted"})));
  std::cout << "profiles: put user_profile_123 and user_profile_456 on [user_updated, "
               "user_deleted]\n";
  or_throw(posts.put(
    "user_posts_123", posts_123, karlton::ttl::never(),
    karlton::dependencies{}.on_events({"user_updated", "post_created", "post_deleted"})));
  std::cout << "posts:    put user_posts_123 on [user_updated, post_created, "
               "post_deleted]\n";
  or_throw(posts.put("post_789", R"({"title": "Hello"})", karlton::ttl::never(),
                     karlton::dependencies{}.on_events({"post_deleted"})));
  std::cout << "posts:    put post_789 on [post_deleted]\n";

  auto summary = emit(rt, log, "user_updated", R"({"user_id": "123"})");
  {
    // The subscriber runs on an actor thread of its own; wait for it, boundedly.
    std::unique_lock<std::mutex> guard{heard->mtx};
    if (!heard->cv.wait_for(guard, std::chrono::seconds{5},
                            [&] { return !heard->lines.empty(); }))
      throw std::runtime_error("the subscriber did not hear user_updated within 5 s");
    for (const auto& line : heard->lines)
      std::cout << line << '\n';
  }
  print_summary(summary);
  print_stats("profiles", or_throw(profiles.stats()));
  print_stats("posts", or_throw(posts.stats()));
  std::cout << "post_789 still cached: " << std::boolalpha
            << or_throw(posts.contains("post_789")) << " (it does not depend on "
            << "user_updated)\n";
  std::cout
    << "The data is for the subscribers; the invalidation goes by the event's name\n"
       "alone, so user 123's update took user_profile_456 too. An event per\n"
       "user (\"user_updated:123\") would spare it.\n";

  auto b = or_throw(rt.event_stats());
  std::cout << "event_stats: {events_emitted: " << b.events_emitted
            << ", tags_invalidated: " << b.tags_invalidated
            << ", key_cascades: " << b.key_cascades
            << ", subscribers_called: " << b.subscribers_called
            << ", deepest_cascade: " << b.deepest_cascade << "}\n";
}

int run() {
  removal_log log; // outlives the runtime, whose shards call into it
  karlton::runtime rt;
  the_guide(rt, log);
  every_cache(rt, log);
  return 0;
}

} // namespace

int main() {
  return examples::run_example("event_driven", run);
}
