"""redis-benchmark against karlton-node (resp.md §8): PING, SET, GET, INCR and
MSET run to the end with no WARNING and no ERR in the output."""

import shutil
import subprocess
import unittest

from harness import start_node

REDIS_BENCHMARK = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"


class Benchmark(unittest.TestCase):
    def run_benchmark(self, tests):
        node = start_node()
        try:
            r = subprocess.run([REDIS_BENCHMARK, "-h", "127.0.0.1", "-p", str(node.resp_port),
                                "-t", tests, "-n", "20000", "-q"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=100)
            out = (r.stdout + r.stderr).decode(errors="replace")
            self.assertEqual(r.returncode, 0, out)
            self.assertNotIn("WARNING", out)
            self.assertNotIn("ERR", out)
            for name in tests.split(","):
                self.assertIn(name.upper(), out.upper())
            self.assertTrue(node.running())
        finally:
            node.stop()

    def test_ping_set_get_incr_mset(self):
        self.run_benchmark("ping,set,get,incr,mset")


if __name__ == "__main__":
    unittest.main()
