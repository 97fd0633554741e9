#!/usr/bin/env python3
"""What turning BCAST tracking on and off costs the other clients of a node.

    python3 bench/bcast_toggle.py build-release/karlton-node

Starts the node on loopback (tests/server/python/harness.py), fills the
tracking table with 255 clients of 256 prefixes each (65,280, near the
65,536 bound), then one connection pipelines `CLIENT TRACKING ON BCAST PREFIX
zz` / `OFF` for 5 s while another sends PINGs one at a time. Prints the PING
latency before and during, and the toggles a second. Each loop is bounded in
time; the node is stopped at the end.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "server",
                                "python"))
import harness  # noqa: E402

TOGGLE_SECONDS = 5.0
PINGS = 400


def ping_latency(node):
    sock = node.connect()
    times = []
    for _ in range(PINGS):
        start = time.perf_counter()
        sock.sendall(harness.command("PING"))
        harness.read_lines(sock, 1, time.monotonic() + 10)
        times.append((time.perf_counter() - start) * 1e3)
    sock.close()
    times.sort()
    return "p50 %.3f ms, p99 %.3f ms, max %.3f ms" % (
        times[len(times) // 2], times[int(len(times) * 0.99)], times[-1])


def main():
    harness.node_from_argv()
    node = harness.start_node()
    try:
        print("PING alone:", ping_latency(node))
        trackers = []
        for c in range(255):
            sock = node.connect()
            prefixes = []
            for i in range(256):
                prefixes += ["PREFIX", "%03d%03d:" % (c, i)]
            sock.sendall(harness.command("CLIENT", "TRACKING", "ON", "BCAST", *prefixes))
            harness.read_lines(sock, 1, time.monotonic() + 30)
            trackers.append(sock)
        toggles = [0]

        def toggle():
            sock = node.connect()
            batch = (harness.command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "zz") +
                     harness.command("CLIENT", "TRACKING", "OFF")) * 200
            end = time.monotonic() + TOGGLE_SECONDS
            while time.monotonic() < end:
                sock.sendall(batch)
                harness.read_lines(sock, 400, time.monotonic() + 60)
                toggles[0] += 400
            sock.close()

        toggler = threading.Thread(target=toggle)
        start = time.monotonic()
        toggler.start()
        print("PING while one connection toggles:", ping_latency(node))
        toggler.join()
        print("toggles a second: %.0f" % (toggles[0] / (time.monotonic() - start)))
        for sock in trackers:
            sock.close()
    finally:
        node.stop()


if __name__ == "__main__":
    main()
