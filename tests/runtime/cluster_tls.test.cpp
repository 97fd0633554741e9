// TLS with verified certificates: what README tells a cluster on an untrusted
// network to use, since CAF 0.17 acts on some messages from any host that
// reaches the port before karlton sees them (README, Limits). With CAF's
// `openssl.certificate`, `openssl.key` and `openssl.cafile` set, both sides of
// every connection must show a certificate from that CA, so a host without
// one cannot send the peer anything. The certificates are made for each run
// with the `openssl` command in a temporary folder.
#include <catch2/catch.hpp>

#include <memory>
#include <string>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/remote_actor.hpp>

#include "support/eventually.hpp"
#include "support/log_lines.hpp"
#include "support/must.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/test_nodes.hpp"
#include <karlton/messages/peer_interface.hpp>
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using karlton::testing::eventually;
using karlton::testing::log_lines;
using karlton::testing::must;
using karlton::testing::node_options;
using karlton::testing::run_command;
using karlton::testing::temp_dir;
using karlton::testing::users_options;

namespace {

// Certificate authorities and certificates they issued, as PEM files.
class certificates {
public:
  // A self-signed authority `ca` (ca-key.pem, ca.pem).
  void make_authority(const std::string& ca) {
    run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", file(ca + "-key"), "-out",
         file(ca), "-days", "2", "-subj", "/CN=karlton test " + ca});
  }

  // A certificate for `name` (name-key.pem, name.pem) issued by `ca`.
  void issue(const std::string& name, const std::string& ca) {
    run({"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", file(name + "-key"), "-out", file(name + "-request"),
         "-subj", "/CN=" + name});
    run({"openssl", "x509", "-req", "-in", file(name + "-request"), "-CA", file(ca),
         "-CAkey", file(ca + "-key"), "-CAcreateserial", "-out", file(name), "-days",
         "2"});
  }

  // A runtime config whose connections show `name`'s certificate and accept
  // only certificates from `ca`.
  std::unique_ptr<runtime_config> config(const std::string& name, const std::string& ca) {
    auto cfg = std::make_unique<runtime_config>();
    cfg->openssl_certificate = file(name);
    cfg->openssl_key = file(name + "-key");
    cfg->openssl_cafile = file(ca);
    return cfg;
  }

private:
  std::string file(const std::string& stem) const {
    return (dir_.path() / (stem + ".pem")).string();
  }

  static void run(const std::vector<std::string>& cmd) {
    std::string out;
    INFO(out);
    REQUIRE(run_command(cmd, out) == 0);
  }

  temp_dir dir_{"pki"};
};

} // namespace

TEST_CASE("with verified certificates, nodes of the cluster's authority join and "
          "invalidate, and a host without such a certificate cannot reach the peer",
          "[cluster][tls]") {
  certificates pki;
  pki.make_authority("cluster-ca");
  pki.make_authority("rogue-ca");
  pki.issue("node", "cluster-ca");
  pki.issue("rogue", "rogue-ca");
  log_lines log;
  runtime a{pki.config("node", "cluster-ca")};
  runtime b{pki.config("node", "cluster-ca")};
  must(a.start_cluster(node_options("a", log, true)));
  must(b.start_cluster(node_options("b", log, true)));
  REQUIRE_FALSE(b.join("127.0.0.1", a.cluster_port()));
  REQUIRE(eventually([&] { return must(a.members()).size() == 1; }));
  auto at_a = must(a.create_cache(users_options(a, distribution::sync)));
  auto at_b = must(b.create_cache(users_options(b, distribution::sync)));
  REQUIRE(must(at_a.get_or_load("k")).str() == "v1");
  REQUIRE(must(at_b.erase("k")) == false); // not cached at b
  CHECK_FALSE(must(at_a.contains("k")));
  // A holder of a certificate from the authority reaches the peer (and could
  // send it anything, as a member can). TLS without a certificate (anonymous,
  // what `tls=true` alone uses), and with one from another authority: the
  // handshake fails, no message passes.
  runtime holder{pki.config("node", "cluster-ca")};
  CHECK(caf::openssl::remote_actor<peer_actor>(holder.system(), "127.0.0.1",
                                               a.cluster_port()));
  runtime anonymous;
  CHECK_FALSE(caf::openssl::remote_actor<peer_actor>(anonymous.system(), "127.0.0.1",
                                                     a.cluster_port()));
  runtime rogue{pki.config("rogue", "rogue-ca")};
  CHECK_FALSE(caf::openssl::remote_actor<peer_actor>(rogue.system(), "127.0.0.1",
                                                     a.cluster_port()));
  // Plain BASP neither.
  runtime plain;
  CHECK_FALSE(
    plain.system().middleman().remote_actor<peer_actor>("127.0.0.1", a.cluster_port()));
  if (must(a.members()).size() != 1)
    for (auto& l : log.lines)
      UNSCOPED_INFO(l);
  CHECK(must(a.members()).size() == 1);
  CHECK(must(a.cluster_stats()).unauthenticated_messages == 0);
}
