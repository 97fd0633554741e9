// The runtime as a cluster node: its peer actor, the port it listens on, and
// the requests that go to that actor.
#include <random>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/publish.hpp>

#include "actors/peer_actor.hpp"
#include "runtime/cache_core.hpp"
#include "runtime/runtime_detail.hpp"
#include "runtime/tls_error_queue.hpp"
#include <karlton/runtime/log.hpp>
#include <karlton/runtime/runtime.hpp>

namespace karlton {

namespace {

using detail::ask;
using detail::bus_timeout;

// A local call to the node's peer `p` answered with ok (`call` names it when
// there is no cluster): its error, or none.
template <class... Ts>
caf::error ok_from_peer(caf::actor_system& sys, caf::expected<peer_actor> p,
                        const char* call, caf::timespan timeout, Ts&&... xs) {
  if (!p) return std::move(p.error());
  if (!*p)
    return make_error(errc::invalid_option,
                      std::string{call} + ": call start_cluster first");
  auto r = ask<caf::ok_atom>(sys, *p, timeout, std::forward<Ts>(xs)...);
  return r ? caf::error{} : std::move(r.error());
}

caf::error check_modules(caf::actor_system& sys, const cluster_options& opts) {
  if (!sys.has_middleman())
    return make_error(errc::invalid_option,
                      "the actor system has no middleman: load caf::io::middleman in its "
                      "config (runtime_config does)");
  if (opts.tls && !sys.has_openssl_manager())
    return make_error(
      errc::invalid_option,
      "option karlton.cluster.tls: the actor system has no OpenSSL module: "
      "load caf::openssl::manager in its config (runtime_config does)");
  return caf::none;
}

// The node's log: the service's sink unless the options name a log of their
// own (read per line, so a later set_log_sink counts).
log_sink log_of(const cluster_options& opts) {
  return opts.log ? opts.log : log_sink{log_line};
}

// The peer actor's setup from the cluster options, but for the bus and for
// the port when the options leave it to the kernel (0).
peer_setup peer_setup_for(const cluster_options& opts,
                          std::shared_ptr<const clock> time_source) {
  peer_setup setup;
  static_cast<peer_options&>(setup) = opts; // the options both share
  // A lapse clears, or under repair-ttl caps every TTL as the repair will; unlike
  // the change feed's, it withholds hits until the lease holds again (rule 7: a
  // node that lost a member serves no hits until it repaired).
  setup.lease = std::make_shared<read_lease>(opts.repair_ttl, lapsed_hits::withheld);
  setup.time_source = std::move(time_source);
  setup.log = log_of(opts); // one log for the whole runtime
  setup.me.host = opts.host;
  setup.me.port = opts.port;
  setup.me.incarnation = std::random_device{}() ^ (uint64_t(wall_clock_ns()) << 16);
  return setup;
}

} // namespace

caf::expected<peer_actor> runtime::live_peer() {
  std::lock_guard<std::mutex> guard{caches_mtx_};
  if (stopped_) return detail::stopped_error();
  return peer_;
}

caf::expected<uint16_t> runtime::start_cluster(cluster_options opts) {
  if (auto err = refused_in_actor()) return err;
  if (auto err = validate(opts)) return err;
  if (auto err = check_modules(*sys_, opts)) return err;
  peer_actor p;
  {
    std::lock_guard<std::mutex> guard{caches_mtx_};
    if (stopped_) return detail::stopped_error();
    if (peer_)
      return make_error(errc::invalid_option,
                        "start_cluster: this runtime is a node already");
    auto setup = peer_setup_for(opts, clock_);
    setup.event_bus = ensure_bus();
    if (opts.port == 0) {
      // The node's name and member info carry its port: pick it first.
      auto free = detail::free_port(opts.host);
      if (!free) return std::move(free.error());
      setup.me.port = *free;
    }
    setup.me.name = opts.node_name.empty()
                      ? opts.host + ":" + std::to_string(setup.me.port)
                      : opts.node_name;
    auto me = setup.me;
    auto lease = setup.lease;
    p = sys_->spawn(peer, std::move(setup));
    auto port = opts.tls ? caf::openssl::publish(p, me.port, opts.host.c_str(), true)
                         : sys_->middleman().publish(p, me.port, opts.host.c_str(), true);
    if (!port) {
      caf::anon_send(p, stop_atom::value, this_process_token());
      return std::move(port.error());
    }
    peer_ = p;
    lease_ = lease;
    cluster_port_ = *port;
    node_name_ = me.name;
  }
  if (open_to_strangers(opts, sys_->config()))
    log_of(opts)(
      "karlton: warning: the cluster port " + opts.host + ":" +
      std::to_string(cluster_port_) +
      " is open to other hosts without TLS that verifies certificates; any host that "
      "reaches it can crash this node through CAF 0.17 (README, Limits): firewall it, "
      "or set karlton.cluster.tls with openssl.certificate, openssl.key and "
      "openssl.cafile");
  if (opts.secret.size() < min_strong_secret_bytes)
    log_of(opts)("karlton: warning: karlton.cluster.secret is " +
                 std::to_string(opts.secret.size()) +
                 " bytes; a host that reaches the cluster port can test guesses of it "
                 "offline from one handshake: use at least " +
                 std::to_string(min_strong_secret_bytes) +
                 " random bytes (openssl rand -hex 32)");
  if (lease_outlives_drop(opts, sys_->config()))
    log_of(opts)(
      "karlton: warning: karlton.cluster.heartbeat plus read-lease is not shorter "
      "than member-timeout and CAF's middleman.connection-timeout: a node frozen "
      "that long may serve, when it runs again, what others invalidated after "
      "they dropped it (README, Cluster options)");
  if (opts.tls && !detail::tls_queue_guarded())
    log_of(opts)(
      "karlton: warning: OpenSSL's SSL_read resolves past karlton's guard "
      "(runtime/tls_error_queue.cpp): a host that fails a TLS handshake with this node "
      "can close its links to other members; link karlton statically, or before libssl");
  join_seeds(p, opts.seeds);
  forget_logger_of_this_thread();
  return cluster_port_;
}

void runtime::join_seeds(const peer_actor& p, const std::vector<std::string>& seeds) {
  // One member is enough: it tells us the rest. If no seed answers now, the
  // peer keeps trying them all in the background (with backoff), so nodes
  // may start in any order.
  std::vector<member_info> unreached;
  for (auto& seed : seeds) {
    auto colon = seed.rfind(':');
    auto host = seed.substr(0, colon);
    auto port = static_cast<uint16_t>(std::stoul(seed.substr(colon + 1)));
    if (!join(host, port)) return;
    unreached.push_back(member_info{seed, host, port, 0});
  }
  if (unreached.empty()) return;
  caf::scoped_actor self{*sys_}; // the peer takes joins from this node only
  for (auto& target : unreached)
    self->send(p, join_atom::value, this_process_token(), std::move(target), uint64_t{0});
}

caf::error runtime::join(const std::string& host, uint16_t port) {
  if (auto err = refused_in_actor()) return err;
  return ok_from_peer(*sys_, live_peer(), "join", std::chrono::seconds{30},
                      join_atom::value, this_process_token(), host, port);
}

caf::expected<std::vector<member_info>> runtime::members() {
  if (auto err = refused_in_actor()) return err;
  auto p = live_peer();
  if (!p) return std::move(p.error());
  if (!*p) return std::vector<member_info>{};
  return ask<std::vector<member_info>>(*sys_, *p, bus_timeout, members_atom::value,
                                       this_process_token());
}

caf::error runtime::forget_member(const std::string& name) {
  if (auto err = refused_in_actor()) return err;
  return ok_from_peer(*sys_, live_peer(), "forget", bus_timeout, forget_atom::value,
                      this_process_token(), name);
}

caf::expected<peer_stats> runtime::cluster_stats() {
  if (auto err = refused_in_actor()) return err;
  auto p = live_peer();
  if (!p) return std::move(p.error());
  if (!*p) return peer_stats{};
  return ask<peer_stats>(*sys_, *p, bus_timeout, peer_stats_atom::value,
                         this_process_token());
}

std::string runtime::node_name() const {
  std::lock_guard<std::mutex> guard{caches_mtx_};
  return node_name_;
}

uint16_t runtime::cluster_port() const {
  std::lock_guard<std::mutex> guard{caches_mtx_};
  return cluster_port_;
}

} // namespace karlton
