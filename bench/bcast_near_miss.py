#!/usr/bin/env python3
"""What BCAST prefixes built to nearly match a key cost the writers of that key.

    python3 bench/bcast_near_miss.py build-release/karlton-node

Starts the node on loopback (tests/server/python/harness.py). Sixteen
clients turn BCAST tracking on with the prefixes `Z…ZA` of every length from
1 to 1,024 bytes (64 each, 0.5 MiB in all; a client may hold 64 KiB), the
worst an attacker with a password can build against a key `Z…Z` it knows. Another
connection then pipelines `SET` of a 1,100-byte key `Z…Z` for 3 s, then of a
key of the same length under no prefix (`Y…Y`). Prints both rates; each loop
is bounded in time and the node is stopped at the end.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "server",
                                "python"))
import harness  # noqa: E402

SET_SECONDS = 3.0
KEY_BYTES = 1100
PIPELINE = 100


def sets_per_second(node, key):
    sock = node.connect()
    batch = harness.command("SET", key, "v") * PIPELINE
    done = 0
    start = time.monotonic()
    while time.monotonic() - start < SET_SECONDS:
        sock.sendall(batch)
        harness.read_lines(sock, PIPELINE, time.monotonic() + 60)
        done += PIPELINE
    sock.close()
    return done / (time.monotonic() - start)


def main():
    harness.node_from_argv()
    node = harness.start_node()
    try:
        trackers = []
        for c in range(16):
            sock = node.connect()
            prefixes = []
            for length in range(c, 1024, 16):
                prefixes += ["PREFIX", "Z" * length + "A"]
            sock.sendall(harness.command("CLIENT", "TRACKING", "ON", "BCAST", *prefixes))
            harness.read_lines(sock, 1, time.monotonic() + 30)
            trackers.append(sock)
        near = sets_per_second(node, "Z" * KEY_BYTES)
        clear = sets_per_second(node, "Y" * KEY_BYTES)
        print("SETs a second of the key the prefixes nearly match: %.0f" % near)
        print("SETs a second of a key under no prefix: %.0f" % clear)
        for sock in trackers:
            sock.close()
    finally:
        node.stop()


if __name__ == "__main__":
    main()
