"""redis-benchmark against karlton-node (resp.md §8): PING, SET, GET, INCR and
MSET run to the end with no WARNING and no ERR in the output."""

import os
import shutil
import subprocess
import unittest

from harness import command, session_commands_ready, start_node

REDIS_BENCHMARK = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"


@unittest.skipUnless(os.access(REDIS_BENCHMARK, os.X_OK), "redis-benchmark is not installed")
@unittest.skipUnless(session_commands_ready(), "make_session answers no commands yet")
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
        # INCR needs the cache's increment (helper `compute`); until it lands
        # the stub answers "not implemented yet", and this test says so.
        node = start_node()
        try:
            with node.connect() as s:
                s.sendall(command("INCR", "bench:probe"))
                reply = s.recv(4096)
        finally:
            node.stop()
        if b"not implemented" in reply:
            self.skipTest("INCR: the cache's increment is not implemented yet")
        self.run_benchmark("ping,set,get,incr,mset")

    def test_ping_set_get_mset(self):
        self.run_benchmark("ping,set,get,mset")


if __name__ == "__main__":
    unittest.main()
