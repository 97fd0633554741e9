"""karlton-node's /metrics and INFO (resp.md §7): curl fetches the endpoint,
prometheus_client's own parser reads it, and after known traffic through
redis-cli the numbers in both say what happened. Also the endpoint's
replies to other paths, other methods and a missing password."""

import os
import shutil
import subprocess
import unittest

from prometheus_client.parser import text_string_to_metric_families

from harness import NodeTestCase, start_node

CURL = shutil.which("curl") or "/usr/bin/curl"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def curl(url, *args):
    """(status, body) of `curl -s url`."""
    r = subprocess.run([CURL, "-s", "-o", "-", "-w", "\n%{http_code}", *args, url],
                       capture_output=True, timeout=30)
    body, _, status = r.stdout.decode().rpartition("\n")
    return int(status), body


def families(text):
    """{name: family}; prometheus_client names counters without _total."""
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams, family, name, **labels):
    for s in fams[family].samples:
        if s.name == name and s.labels == labels:
            return s.value
    raise AssertionError("no sample %s%s" % (name, labels))


def cli(port, *args):
    r = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *args],
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(r.stderr.decode(errors="replace"))
    return r.stdout.decode(errors="replace")


class Endpoint(NodeTestCase):
    node_args = ("--node.caches=[\"first\",\"second\"]",)
    metrics = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.url = "http://127.0.0.1:%d/metrics" % cls.node.metrics_port

    def test_the_text_parses_with_every_cache_and_the_server_families(self):
        status, text = curl(self.url)
        self.assertEqual(status, 200)
        fams = families(text)
        for name in ("karlton_hits", "karlton_misses", "karlton_entries", "karlton_bytes",
                     "karlton_invalidations", "karlton_served_age_seconds",
                     "karlton_invalidation_delay_seconds", "karlton_cluster_members",
                     "karlton_resp_commands", "karlton_resp_connected_clients",
                     "karlton_resident_bytes"):
            self.assertIn(name, fams)
        self.assertEqual(fams["karlton_hits"].type, "counter")
        self.assertEqual(fams["karlton_served_age_seconds"].type, "histogram")
        caches = {s.labels["cache"] for s in fams["karlton_entries"].samples}
        self.assertEqual(caches, {"first", "second"})
        self.assertGreater(sample(fams, "karlton_resident_bytes", "karlton_resident_bytes"), 0)
        # Cumulative buckets, +Inf equal to _count.
        for cache in ("first", "second"):
            buckets = [s for s in fams["karlton_served_age_seconds"].samples
                       if s.name.endswith("_bucket") and s.labels["cache"] == cache]
            counts = [s.value for s in buckets]
            self.assertEqual(counts, sorted(counts))
            self.assertEqual(buckets[-1].labels["le"], "+Inf")
            self.assertEqual(counts[-1], sample(fams, "karlton_served_age_seconds",
                                                "karlton_served_age_seconds_count",
                                                cache=cache))

    def test_other_paths_and_methods(self):
        self.assertEqual(curl(self.url.replace("/metrics", "/"))[0], 404)
        self.assertEqual(curl(self.url, "-X", "POST")[0], 405)
        self.assertEqual(curl(self.url, "-H", "X-Fill: " + "a" * 9000)[0], 431)
        self.assertEqual(curl(self.url)[0], 200)

    def test_known_traffic_shows_in_metrics_and_info(self):
        port = self.node.resp_port
        before = families(curl(self.url)[1])
        hits0 = sample(before, "karlton_hits", "karlton_hits_total", cache="first")
        misses0 = sample(before, "karlton_misses", "karlton_misses_total", cache="first")
        commands0 = sample(before, "karlton_resp_commands", "karlton_resp_commands_total")
        self.assertEqual(cli(port, "SET", "m:k", "v").strip(), "OK")
        for _ in range(3):
            self.assertEqual(cli(port, "GET", "m:k").strip(), "v")
        for _ in range(2):
            self.assertEqual(cli(port, "GET", "m:none").strip(), "")
        after = families(curl(self.url)[1])
        self.assertEqual(sample(after, "karlton_hits", "karlton_hits_total", cache="first"),
                         hits0 + 3)
        self.assertEqual(
            sample(after, "karlton_misses", "karlton_misses_total", cache="first"),
            misses0 + 2)
        self.assertGreaterEqual(
            sample(after, "karlton_resp_commands", "karlton_resp_commands_total"),
            commands0 + 6)
        self.assertGreaterEqual(sample(after, "karlton_entries", "karlton_entries",
                                       cache="first"), 1)
        info = dict(line.split(":", 1) for line in cli(port, "INFO").splitlines()
                    if ":" in line and not line.startswith("#"))
        self.assertEqual(info["redis_version"], "7.0.0")
        self.assertEqual(int(info["tcp_port"]), port)
        self.assertEqual(int(info["keyspace_hits"]), hits0 + 3)
        self.assertEqual(int(info["keyspace_misses"]), misses0 + 2)
        self.assertTrue(info["db0"].startswith("keys="), info["db0"])
        self.assertGreater(int(info["used_memory_rss"]), 0)
        keyspace = cli(port, "INFO", "keyspace")
        self.assertTrue(keyspace.startswith("# Keyspace"), keyspace)


class Scheduler(unittest.TestCase):
    """CAF's workers get the cores the I/O threads leave (at least one),
    unless scheduler.max-threads is given; a cache has a shard per worker."""

    def test_workers_fit_around_the_io_threads(self):
        cores = os.cpu_count()
        for args, shards in (((), max(1, cores - 1)),
                             (("--node.resp-threads=2",), max(1, cores - 2)),
                             (("--scheduler.max-threads=3",), 3)):
            node = start_node(*args)
            try:
                info = dict(line.split(":", 1)
                            for line in cli(node.resp_port, "INFO", "karlton").splitlines()
                            if ":" in line)
                self.assertEqual(int(info["karlton_shards"]), shards, args)
            finally:
                node.stop()


class Password(unittest.TestCase):
    def test_metrics_needs_basic_default_and_the_password(self):
        node = start_node("--node.requirepass=s3cret-pw", metrics=True)
        try:
            url = "http://127.0.0.1:%d/metrics" % node.metrics_port
            status, body = curl(url)
            self.assertEqual(status, 401)
            self.assertNotIn("karlton_", body)
            self.assertEqual(curl(url, "-u", "default:wrong")[0], 401)
            status, body = curl(url, "-u", "default:s3cret-pw")
            self.assertEqual(status, 200)
            self.assertIn("karlton_hits", families(body))
            self.assertNotIn("s3cret-pw", node.stderr())
        finally:
            node.stop()


if __name__ == "__main__":
    unittest.main()
