// The members of a node's cluster, without actors: who is a member through
// which handle, whether a message or a handshake comes from the member it
// names, who went silent, whom to tell a joiner about and whom to join after
// a handshake, and the backoff of reconnections to lost members. The peer
// actor keeps one with its actor handles; tests use a plain handle type.
#pragma once

#include <algorithm>
#include <cstddef>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "actors/link_auth.hpp"
#include "base/backoff.hpp"
#include <karlton/base/clock.hpp>
#include <karlton/messages/cluster.hpp>

namespace karlton {

/// `Handle` is copyable, compares with `==`, and has `address()`, comparable
/// with `==` to what identifies a message's sender (CAF's actor handles).
template <class Handle>
class member_table {
public:
  using time_point = clock::time_point;
  using duration = time_point::duration;

  struct member {
    member_info info;
    Handle handle;
    time_point last_heard; ///< on our clock, when its last word arrived
    /// On our clock, when we sent the latest message it took (it said so in
    /// a batch's `link_tag::echo`): it heard from us no earlier, so it drops
    /// us no earlier than this plus its `member_timeout`. The read lease
    /// counts from here.
    time_point echoed;
    /// Its clock's reading in the latest batch we took from it: the echo we
    /// send it.
    uint64_t their_sent = 0;
    /// The keys and counters of its links (set after `add` by the handshake
    /// that admitted it): what it sends is checked under them.
    peer_link link = {};
  };

  /// Reconnection to a lost member: the first wait, doubled up to `max`, each
  /// with equal jitter drawn from `seed`'s sequence (`equal_jitter`).
  member_table(duration reconnect_base, duration reconnect_max,
               uint64_t seed = std::random_device{}())
    : reconnect_base_(reconnect_base), reconnect_max_(reconnect_max), rng_(seed) {}

  // -- who is a member ----------------------------------------------------------

  /// `info` passed the handshake through `handle` at `now`, having last
  /// heard from us what we sent at `echoed` (the handshake's message it
  /// takes last): a member, no longer reconnected to. True if it is new: not
  /// a member before, or one reached through another handle (a new
  /// connection, to monitor). The same member shaking hands again through
  /// the same handle is not: it keeps its links (the handshake at hand adds
  /// one, see `peer_link`) and what it echoed, which this handshake raises
  /// only once it proves the member took its message (`took`): a failed one
  /// leaves it a member all the same.
  bool add(const member_info& info, const Handle& handle, time_point now,
           time_point echoed) {
    auto known = members_.find(info.name);
    bool is_new = known == members_.end() || !(known->second.handle == handle);
    member m{info, handle, now, std::min(echoed, now)};
    if (!is_new) {
      m.echoed = known->second.echoed;
      m.their_sent = known->second.their_sent;
      m.link = std::move(known->second.link);
    }
    members_[info.name] = std::move(m);
    joining_.erase(info.name);
    had_members_ = true;
    return is_new;
  }

  /// True if `name` is a member reached through another actor than the one
  /// at `by`: a handshake claiming it is refused (a name is only taken over
  /// once its member is gone; the same member may shake hands again).
  template <class Address>
  bool name_taken(const std::string& name, const Address& by) const {
    auto i = members_.find(name);
    return i != members_.end() && !(i->second.handle.address() == by);
  }

  /// True if a message from `sender` that claims to come from `origin` does:
  /// `sender` is the handle `origin` passed the handshake with. Then `origin`
  /// was heard from at `now` (see `silent`) with the clock readings of
  /// `tag` (see `link_tag`): its `sent` is what we echo from now on, its
  /// `echo` names when we sent what it took last. Neither goes back, and an
  /// echo past `now` (no honest member sends one) counts as `now`.
  template <class Address>
  bool heard_from(const std::string& origin, const Address& sender, time_point now,
                  const link_tag& tag) {
    auto* m = claimed_by(origin, sender);
    if (!m) return false;
    m->last_heard = now;
    m->their_sent = std::max(m->their_sent, tag.sent);
    raise_echo(*m, from_tag_reading(tag.echo, now), now);
    return true;
  }

  /// Member `name`, reached through the actor at `by`, answered under its
  /// link's MAC a batch (or the join) we sent at `sent`: it took that
  /// message, so its last word from us is no older. An echo a round trip
  /// old, where its batches' echoes are up to two heartbeats old. An answer
  /// of another run of `name` (one we dropped since) counts for nothing.
  /// True if that renewed what it echoed.
  template <class Address>
  bool took(const std::string& name, const Address& by, time_point sent, time_point now) {
    auto* m = claimed_by(name, by);
    return m && raise_echo(*m, sent, now);
  }

  /// The member `origin` if `sender` is the handle it passed the handshake
  /// with, else null. Nothing is recorded: its message must verify first
  /// (then `heard_from`).
  template <class Address>
  member* claimed_by(const std::string& origin, const Address& sender) {
    auto i = members_.find(origin);
    if (i == members_.end() || !(i->second.handle.address() == sender)) return nullptr;
    return &i->second;
  }

  /// The member reached through the actor at `addr`, or null.
  template <class Address>
  member* find_by_address(const Address& addr) {
    for (auto& [name, m] : members_)
      if (m.handle.address() == addr) return &m;
    return nullptr;
  }

  /// The member `name` (to set up its link), or null.
  member* find_mutable(const std::string& name) {
    auto i = members_.find(name);
    return i == members_.end() ? nullptr : &i->second;
  }

  /// Removes the member reached through the actor at `addr` (its connection
  /// went down, or it left) and returns it; nullopt if there is none.
  template <class Address>
  std::optional<member> remove_by_address(const Address& addr) {
    for (auto i = members_.begin(); i != members_.end(); ++i)
      if (i->second.handle.address() == addr) return take(i);
    return std::nullopt;
  }

  /// Removes `name` if it is still the member reached through `handle` (a
  /// handshake that admitted it failed at its last step).
  void remove_if(const std::string& name, const Handle& handle) {
    auto i = members_.find(name);
    if (i != members_.end() && i->second.handle == handle) members_.erase(i);
  }

  /// Removes `name` and returns it; nullopt if it is no member.
  std::optional<member> remove(const std::string& name) {
    auto i = members_.find(name);
    if (i == members_.end()) return std::nullopt;
    return take(i);
  }

  /// Forgets every member and every reconnection (this node leaves).
  void clear() {
    members_.clear();
    joining_.clear();
  }

  bool contains(const std::string& name) const { return members_.count(name) > 0; }
  const member* find(const std::string& name) const {
    auto i = members_.find(name);
    return i == members_.end() ? nullptr : &i->second;
  }
  size_t size() const noexcept { return members_.size(); }
  bool empty() const noexcept { return members_.empty(); }

  /// True if the table held a member at any moment since the last
  /// `mark_members` (or since it was made): one then, or one added since,
  /// whether or not it is gone now. Whoever it was may have invalidated
  /// behind a node that stalled meanwhile.
  bool had_members() const noexcept { return had_members_ || !members_.empty(); }
  /// Starts the span `had_members` looks back over (each heartbeat).
  void mark_members() noexcept { had_members_ = !members_.empty(); }
  /// By name.
  const std::map<std::string, member>& all() const noexcept { return members_; }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (auto& [name, m] : members_)
      out.push_back(name);
    return out;
  }

  std::vector<member_info> infos() const {
    std::vector<member_info> out;
    for (auto& [name, m] : members_)
      out.push_back(m.info);
    return out;
  }

  // -- handshakes ---------------------------------------------------------------

  /// What a node that joins as `name` is told: every other member, so it
  /// joins them too (a full mesh).
  std::vector<member_info> others_than(const std::string& name) const {
    std::vector<member_info> out;
    for (auto& [n, m] : members_)
      if (n != name) out.push_back(m.info);
    return out;
  }

  struct join_list {
    std::vector<member_info> join;
    size_t ignored = 0; ///< beyond `max_join_members`, or a name or host too long
  };
  /// Of the members a node we joined told us about, those to join: neither
  /// this node (`me`) nor a member already. Only the first
  /// `max_join_members` count, and none whose name or host is longer than a
  /// handshake admits: each would be retried for good.
  join_list to_join(std::vector<member_info> told, const std::string& me) const {
    join_list out;
    if (told.size() > max_join_members) {
      out.ignored = told.size() - max_join_members;
      told.resize(max_join_members);
    }
    for (auto& o : told) {
      if (o.name.size() > max_node_name_bytes || o.host.size() > max_node_host_bytes)
        ++out.ignored;
      else if (o.name != me && !contains(o.name))
        out.join.push_back(std::move(o));
    }
    return out;
  }

  // -- liveness -----------------------------------------------------------------

  /// Members not heard from for longer than `timeout` at `now`: lost.
  std::vector<std::string> silent(time_point now, duration timeout) const {
    std::vector<std::string> out;
    for (auto& [name, m] : members_)
      if (now - m.last_heard > timeout) out.push_back(name);
    return out;
  }

  /// The oldest of the members' `echoed`: when we sent what the member
  /// that heard from us least recently took last, from which the read lease
  /// counts. Nullopt without members. (A scan: a cluster has a few members,
  /// and this runs on each acknowledgement, so it allocates nothing.)
  std::optional<time_point> oldest_echo() const {
    std::optional<time_point> out;
    for (auto& [name, m] : members_)
      if (!out || m.echoed < *out) out = m.echoed;
    return out;
  }

  // -- reconnection -------------------------------------------------------------
  //
  // One chain of attempts per name, whatever asks for it (a member list that
  // names it, its loss, a seed): at most one attempt in flight and one retry
  // due. Before, each asked-for join started a chain of its own that retried
  // until it succeeded, so a link that flapped while a member stayed out of
  // reach multiplied the connection attempts without bound. Each chain has a
  // number, which its retries carry: one that outlived its chain (the member
  // came back meanwhile) is ignored rather than start a second.

  struct retry {
    duration wait;      ///< the backoff's step, with equal jitter
    bool first;         ///< the chain's first failure (worth a log line)
    member_info info;   ///< whom to try next: the latest address asked for
    uint64_t chain = 0; ///< what the retry carries (`begin_attempt`'s `retry_of`)
  };

  /// `info` is wanted as a member: true if an attempt is to start now (it
  /// counts as in flight until `reached` or `attempt_failed`); false if it is
  /// a member, if an attempt is in flight or due (which then uses `info`), or
  /// if `retry_of` (not 0: a retry came due) names a chain that has ended.
  bool begin_attempt(const member_info& info, uint64_t retry_of = 0) {
    if (contains(info.name)) {
      joining_.erase(info.name);
      return false;
    }
    auto i = joining_.find(info.name);
    if (retry_of != 0) {
      if (i == joining_.end() || i->second.number != retry_of) return false;
      i->second.retry_due = false;
    } else if (i == joining_.end()) {
      i = start_chain(info);
    } else {
      i->second.forgotten = false; // named again: wanted again
    }
    auto& c = i->second;
    c.info = info;
    if (c.attempt || c.retry_due) return false;
    c.attempt = true;
    return true;
  }

  /// The attempt to reach `info` failed: when to try again (from the base,
  /// doubling up to the max, jittered), or none if it is a member, a retry is
  /// due, or it was forgotten meanwhile (`forget`). A chain that ended
  /// meanwhile starts again: the handshake admitted it (which ends the chain)
  /// and then its join failed.
  std::optional<retry> attempt_failed(const member_info& info) {
    if (contains(info.name)) {
      joining_.erase(info.name);
      return std::nullopt;
    }
    auto i = joining_.find(info.name);
    if (i != joining_.end() && i->second.forgotten) { // forgotten while it ran
      joining_.erase(i);
      return std::nullopt;
    }
    if (i == joining_.end()) i = start_chain(info);
    auto& c = i->second;
    c.attempt = false;
    if (c.retry_due) return std::nullopt;
    c.retry_due = true;
    auto wait = doubled_wait(reconnect_base_, reconnect_max_, ++c.failures_in_row);
    return retry{equal_jitter(wait, rng_), c.failures++ == 0 && !c.lost, c.info,
                 c.number};
  }

  /// The member `info` was lost: its first retry (after the base wait), or
  /// none if an attempt is in flight or due already.
  std::optional<retry> lost(const member_info& info) {
    auto i = joining_.find(info.name);
    if (i == joining_.end()) i = start_chain(info);
    auto& c = i->second;
    c.info = info;
    c.lost = true; // logged as lost: its failures need no first line
    if (c.attempt || c.retry_due) return std::nullopt;
    c.failures_in_row = 0; // a loss starts the doubling again
    c.retry_due = true;
    auto wait = doubled_wait(reconnect_base_, reconnect_max_, 1);
    return retry{equal_jitter(wait, rng_), false, info, c.number};
  }

  /// `name` was reached (or joined us): its chain ends.
  void reached(const std::string& name) { joining_.erase(name); }

  /// Nobody is to reach `name` any more (the operator forgot it): its chain
  /// ends, and a retry it has due finds none (`begin_attempt`). An attempt in
  /// flight may still succeed (it came back); if it fails, it is not retried.
  void forget(const std::string& name) {
    auto i = joining_.find(name);
    if (i == joining_.end()) return;
    if (i->second.attempt)
      i->second.forgotten = true;
    else
      joining_.erase(i);
  }

  bool reconnecting(const std::string& name) const {
    auto i = joining_.find(name);
    return i != joining_.end() && !i->second.forgotten;
  }

private:
  // `m` took what we sent at `t` (not past `now`); what it echoed never goes
  // back. True if it moved.
  static bool raise_echo(member& m, time_point t, time_point now) {
    t = std::min(t, now);
    if (t <= m.echoed) return false;
    m.echoed = t;
    return true;
  }

  member take(typename std::map<std::string, member>::iterator i) {
    auto out = std::move(i->second);
    members_.erase(i);
    return out;
  }

  duration reconnect_base_;
  duration reconnect_max_;
  std::minstd_rand rng_; // jitter: members lost together do not retry in step
  std::map<std::string, member> members_;
  bool had_members_ = false; // see had_members
  struct chain {
    member_info info;
    uint64_t number;        // what its retries carry
    bool attempt = false;   // an attempt is in flight
    bool retry_due = false; // a retry is scheduled
    bool lost = false;      // a lost member's (its loss was logged)
    bool forgotten = false; // forgotten during its attempt: ends with it
    uint32_t failures = 0;  // attempts that failed
    // Failures since the chain began or its member was lost: the wait doubles with each.
    uint32_t failures_in_row = 0;
  };
  std::map<std::string, chain> joining_; // members we try to reach
  uint64_t chains_ = 0;                  // chains started: the last one's number

  typename std::map<std::string, chain>::iterator start_chain(const member_info& info) {
    return joining_.emplace(info.name, chain{info, ++chains_}).first;
  }
};

} // namespace karlton
