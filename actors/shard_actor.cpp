#include "actors/shard_actor.hpp"

#include <algorithm>

#include <caf/all.hpp>

#include "messages/errors.hpp"

namespace karlton {

namespace {

using self_ptr = shard_actor::stateful_pointer<shard_actor_state>;

time_point now_of(self_ptr self) {
  return self->state.time_source->now();
}

// Arms the expiry timer for the earliest deadline, unless a timer for that
// deadline or an earlier one is already pending.
void arm_expiry(self_ptr self) {
  auto& st = self->state;
  auto next = st.cache->next_expiry();
  if (!next || (st.armed_for && *st.armed_for <= *next)) return;
  st.armed_for = next;
  auto delay = std::max(*next - now_of(self), time_point::duration::zero());
  // Deadlines are whole milliseconds; one more makes sure the tick lands after it.
  self->delayed_send(self, delay + std::chrono::milliseconds{1}, expire_atom::value,
                     ++st.timer_generation);
}

// Hands the loads the state started to the loader workers, round robin.
void dispatch_loads(self_ptr self) {
  auto& st = self->state;
  for (auto& [key, id] : st.cache->take_loads_to_start()) {
    auto& worker = st.loaders[st.next_loader++ % st.loaders.size()];
    self->send(worker, load_atom::value, std::move(key), id);
  }
}

template <class T>
caf::result<T> or_error(caf::error err, T ok) {
  if (err) return err;
  return ok;
}

} // namespace

shard_actor::behavior_type shard(self_ptr self, shard_setup setup) {
  auto& st = self->state;
  if (setup.listener) {
    auto listener = setup.listener;
    auto user_callback = std::move(setup.config.on_removal);
    setup.config.on_removal = [self, listener, user_callback](const value& v,
                                                              removal_cause why) {
      if (user_callback) user_callback(v, why);
      self->send(listener, removed_atom::value, std::string{v.key()}, why);
    };
  }
  st.cache = std::make_unique<shard_state>(std::move(setup.config));
  st.time_source = std::move(setup.time_source);
  st.inbox = std::move(setup.inbox);
  st.loaders = std::move(setup.loaders);
  return {
    [=](caf::get_atom, const std::string& key) {
      return self->state.cache->get(key, now_of(self));
    },
    [=](caf::get_atom, const std::vector<std::string>& keys) {
      std::vector<shard_state::key_ref> refs;
      refs.reserve(keys.size());
      for (const auto& k : keys)
        refs.push_back({k, static_cast<uint32_t>(hash_key(k))});
      std::vector<value> out;
      out.reserve(keys.size());
      self->state.cache->get_many(refs, now_of(self),
                                  [&](value v) { out.push_back(std::move(v)); });
      return out;
    },
    [=](caf::put_atom, value& v, ttl t) -> caf::result<caf::ok_atom> {
      auto err = self->state.cache->put(std::move(v), t, now_of(self));
      arm_expiry(self);
      return or_error(std::move(err), caf::ok_atom::value);
    },
    [=](caf::put_atom, std::vector<value>& vs, ttl t) -> caf::result<caf::ok_atom> {
      // All or nothing: check every value before storing any.
      const auto& cfg = self->state.cache->config();
      for (const auto& v : vs)
        if (auto err = check_sizes(cfg, v.key().size(), v.bytes().size())) return err;
      auto now = now_of(self);
      for (auto& v : vs)
        if (auto err = self->state.cache->put(std::move(v), t, now)) return err;
      arm_expiry(self);
      return caf::ok_atom::value;
    },
    [=](caf::delete_atom, const std::string& key) {
      return self->state.cache->erase(key, now_of(self));
    },
    [=](contains_atom, const std::string& key) {
      return self->state.cache->contains(key, now_of(self));
    },
    [=](ttl_atom, const std::string& key) {
      return self->state.cache->ttl_of(key, now_of(self));
    },
    [=](clear_atom) { return self->state.cache->clear(); },
    [=](stats_atom) { return self->state.cache->stats(); },
    [=](cleanup_atom) { return self->state.cache->cleanup_expired(now_of(self)); },
    [=](load_atom, const std::string& key) -> caf::result<value> {
      auto rp = self->make_response_promise<value>();
      auto deliver = [rp](caf::expected<value> r) mutable {
        if (r)
          rp.deliver(std::move(*r));
        else
          rp.deliver(std::move(r.error()));
      };
      auto hash = static_cast<uint32_t>(hash_key(key));
      if (auto now = self->state.cache->get_or_load(key, hash, now_of(self), deliver))
        deliver(std::move(*now));
      dispatch_loads(self);
      return rp;
    },
    [=](load_outcome& out) {
      caf::expected<std::string> result = std::move(out.bytes);
      if (out.error) result = std::move(out.error);
      self->state.cache->complete_load(out.key, out.id, std::move(result), out.took,
                                       now_of(self));
      dispatch_loads(self);
      arm_expiry(self);
    },
    [=](doorbell_atom) {
      auto& st = self->state;
      auto now = now_of(self);
      shard_job* batch[prefetch_batch];
      for (int done = 0; done < doorbell_batch;) {
        int n = 0;
        while (n < prefetch_batch && (batch[n] = st.inbox->pop()) != nullptr)
          ++n;
        if (n == 0) {
          if (st.inbox->release_doorbell()) continue; // a job slipped in
          arm_expiry(self);
          return;
        }
        for (int step = 0; step < 3; ++step)
          for (int i = 0; i < n; ++i)
            batch[i]->prefetch(*st.cache, step);
        for (int i = 0; i < n; ++i)
          batch[i]->run(*st.cache, now);
        dispatch_loads(self); // loads the batch started
        done += n;
      }
      arm_expiry(self);
      // Still busy: keep the doorbell claimed and come back after the mailbox.
      self->send(self, doorbell_atom::value);
    },
    [=](expire_atom, uint64_t generation) {
      auto& st = self->state;
      if (generation != st.timer_generation) return; // superseded by a re-arm
      st.armed_for.reset();
      auto now = now_of(self);
      st.cache->cleanup_expired(now, expiry_batch);
      auto next = st.cache->next_expiry();
      if (next && *next <= now) {
        // More already due: continue right after the mailbox, not in one go.
        st.armed_for = now;
        self->send(self, expire_atom::value, ++st.timer_generation);
        return;
      }
      arm_expiry(self);
    },
  };
}

} // namespace karlton
