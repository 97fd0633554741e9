"""Client-side caching against karlton-node (resp.md §6): a RESP3 client
(raw socket, HELLO 3) and redis-py (RESP2, CLIENT TRACKING ... REDIRECT to a
connection subscribed to __redis__:invalidate) hear one invalidation per
cause: a SET by another client, DEL, expiry, eviction, a tag, an event, and
FLUSHDB (null: everything); and a SET on another node of the cluster. Every
wait is a socket read with a timeout."""

import os
import shutil
import socket
import subprocess
import time
import unittest

import redis

from harness import NodeTestCase, command, start_node

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
WAIT = 10.0  # seconds: the bound of every wait for a message


class Resp3:
    """A RESP3 connection: replies in order, pushes set aside as they come."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.buf = b""
        self.pushes = []
        hello = self.call("HELLO", "3")
        assert hello[b"proto"] == 3, hello

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bytes(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n + 2:]
        return out

    def _value(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+",):
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"_":
            return None
        if kind == b"#":
            return rest == b"t"
        if kind in (b"$", b"="):
            n = int(rest)
            return None if n < 0 else self._bytes(n)
        if kind in (b"*", b"~", b">"):
            items = [self._value() for _ in range(int(rest))]
            return ("push", items) if kind == b">" else items
        if kind == b"%":
            out = {}
            for _ in range(int(rest)):
                k = self._value()
                out[k] = self._value()
            return out
        raise AssertionError("unexpected RESP3 line %r" % line)

    def call(self, *args):
        self.sock.settimeout(WAIT)
        self.sock.sendall(command(*args))
        while True:
            v = self._value()
            if isinstance(v, tuple):
                self.pushes.append(v[1])
                continue
            if isinstance(v, RuntimeError):
                raise v
            return v

    def next_push(self, timeout=WAIT):
        """The next push; raises socket.timeout if none comes in time."""
        if self.pushes:
            return self.pushes.pop(0)
        self.sock.settimeout(timeout)
        v = self._value()
        assert isinstance(v, tuple), "a reply where a push was expected: %r" % (v,)
        return v[1]

    def no_push(self, timeout=0.3):
        """True if nothing arrives within `timeout` (used only after a message
        that would have come first, so this is not a wait for an event)."""
        if self.pushes:
            return False
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        self.buf += chunk
        return False


def invalidated(push):
    assert push[0] == b"invalidate", push
    return push[1]


class SingleNode(NodeTestCase):
    node_args = ("--karlton.shards=2",)

    def setUp(self):
        self.writer = redis.Redis(port=self.port, single_connection_client=True)
        self.tracker = Resp3(self.port)
        self.assertEqual(self.tracker.call("CLIENT", "TRACKING", "ON"), "OK")

    def tearDown(self):
        self.tracker.close()
        self.writer.close()

    def prime(self, key, value, **kw):
        """The tracker reads `key` as a miss, the writer sets it, and its
        message is taken; then the tracker reads it again. A shard tells
        after it answers, so a writer's +OK may come before its message: this
        way no late message of the set is left to pass for a later one."""
        self.assertIsNone(self.tracker.call("GET", key))
        self.assertTrue(self.writer.set(key, value, **kw))
        self.assertEqual(invalidated(self.tracker.next_push()), [key.encode()])
        self.assertEqual(self.tracker.call("GET", key), value.encode())

    def test_a_miss_is_tracked_too(self):
        self.assertIsNone(self.tracker.call("GET", "t:miss"))
        self.writer.set("t:miss", "now")
        self.assertEqual(invalidated(self.tracker.next_push()), [b"t:miss"])

    def test_set_by_another_client(self):
        self.prime("t:set", "1")
        self.writer.set("t:set", "2")
        self.assertEqual(invalidated(self.tracker.next_push()), [b"t:set"])
        # Told once: the key is forgotten until read again.
        self.writer.set("t:set", "3")
        self.assertEqual(self.tracker.call("GET", "t:set"), b"3")
        self.writer.set("t:set", "4")
        self.assertEqual(invalidated(self.tracker.next_push()), [b"t:set"])
        self.assertTrue(self.tracker.no_push())

    def test_del(self):
        self.prime("t:del", "1")
        self.assertEqual(self.tracker.call("MGET", "t:del", "t:other"), [b"1", None])
        self.assertEqual(self.writer.delete("t:del"), 1)
        self.assertEqual(invalidated(self.tracker.next_push()), [b"t:del"])

    def test_expiry(self):
        self.prime("t:px", "1", px=1000)
        # Nobody writes it again: the expiry timer alone sends this.
        self.assertEqual(invalidated(self.tracker.next_push()), [b"t:px"])
        self.assertIsNone(self.writer.get("t:px"))

    def test_tag(self):
        self.assertIsNone(self.tracker.call("GET", "t:tagged"))
        self.assertTrue(self.writer.execute_command("KARLTON.PUT", "t:tagged", "v",
                                                    "ON", "1", "tag:t"))
        self.assertEqual(invalidated(self.tracker.next_push()), [b"t:tagged"])
        self.assertEqual(self.tracker.call("GET", "t:tagged"), b"v")
        self.assertEqual(self.writer.execute_command("KARLTON.INVALIDATE", "tag:t"), 1)
        self.assertEqual(invalidated(self.tracker.next_push()), [b"t:tagged"])

    def test_event(self):
        self.assertIsNone(self.tracker.call("GET", "t:ev"))
        self.assertTrue(self.writer.execute_command("KARLTON.PUT", "t:ev", "v",
                                                    "EVENTS", "1", "user_updated"))
        self.assertEqual(invalidated(self.tracker.next_push()), [b"t:ev"])
        self.assertEqual(self.tracker.call("GET", "t:ev"), b"v")
        self.writer.execute_command("KARLTON.EMIT", "user_updated")
        self.assertEqual(invalidated(self.tracker.next_push()), [b"t:ev"])

    def test_flushdb_is_null(self):
        self.prime("t:flush", "1")
        self.assertTrue(self.writer.flushdb())
        self.assertIsNone(invalidated(self.tracker.next_push()))

    def test_bcast_prefix(self):
        bcast = Resp3(self.port)
        try:
            self.assertEqual(bcast.call("CLIENT", "TRACKING", "ON", "BCAST",
                                        "PREFIX", "user:"), "OK")
            self.writer.set("order:1", "x")  # no message for it
            self.writer.set("user:1", "x")
            self.assertEqual(invalidated(bcast.next_push()), [b"user:1"])
            info = self.writer.info("stats")
            self.assertEqual(info["tracking_total_prefixes"], 1)
            self.assertEqual(self.writer.info("clients")["tracking_clients"], 2)
        finally:
            bcast.close()

    def test_refused_options(self):
        for opt in ("OPTIN", "OPTOUT", "NOLOOP"):
            with self.assertRaises(RuntimeError) as e:
                self.tracker.call("CLIENT", "TRACKING", "ON", opt)
            self.assertIn("does not support", str(e.exception))
        with self.assertRaises(RuntimeError) as e:
            self.tracker.call("CLIENT", "TRACKING", "ON", "REDIRECT", "987654")
        self.assertEqual(str(e.exception),
                         "ERR The client ID you want redirect to does not exist")


class RedisPyRedirect(NodeTestCase):
    """redis-py speaks RESP2: its messages come through REDIRECT to a
    connection subscribed to __redis__:invalidate."""

    node_args = ()

    def setUp(self):
        self.pubsub = redis.Redis(port=self.port).pubsub()
        self.pubsub.execute_command("CLIENT", "ID")  # before SUBSCRIBE, on its connection
        self.client_id = self.pubsub.parse_response(block=False, timeout=WAIT)
        self.assertIsInstance(self.client_id, int)
        self.pubsub.subscribe("__redis__:invalidate")
        sub = self.pubsub.get_message(timeout=WAIT)
        self.assertEqual(sub["type"], "subscribe")
        self.tracker = redis.Redis(port=self.port, single_connection_client=True)
        self.writer = redis.Redis(port=self.port, single_connection_client=True)
        self.assertTrue(self.tracker.execute_command("CLIENT", "TRACKING", "ON",
                                                     "REDIRECT", self.client_id))

    def tearDown(self):
        self.pubsub.close()
        self.tracker.close()
        self.writer.close()

    def message(self):
        m = self.pubsub.get_message(timeout=WAIT)
        self.assertIsNotNone(m, "no invalidation within %.0f s" % WAIT)
        self.assertEqual((m["type"], m["channel"]), ("message", b"__redis__:invalidate"))
        return m["data"]

    def test_set_del_flush_reach_the_subscriber(self):
        self.assertIsNone(self.tracker.get("r:k"))  # a miss is tracked too
        self.writer.set("r:k", "1")
        self.assertEqual(self.message(), [b"r:k"])
        self.assertEqual(self.tracker.get("r:k"), b"1")
        self.writer.set("r:k", "2")
        self.assertEqual(self.message(), [b"r:k"])
        self.assertEqual(self.tracker.get("r:k"), b"2")
        self.writer.delete("r:k")
        self.assertEqual(self.message(), [b"r:k"])
        self.tracker.get("r:k")
        self.writer.flushdb()
        self.assertIsNone(self.message())

    def test_subscribed_connection_accepts_only_pubsub_commands(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=WAIT) as s:
            s.sendall(command("SUBSCRIBE", "__redis__:invalidate") + command("GET", "x") +
                      command("PING") + command("SUBSCRIBE", "news"))
            want = (b"*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n"
                    b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / "
                    b"PING / QUIT / RESET are allowed in this context\r\n"
                    b"*2\r\n$4\r\npong\r\n$0\r\n\r\n-ERR karlton serves only")
            got = b""
            while len(got) < len(want):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            self.assertEqual(got[:len(want)], want)


def cli(port, *args):
    r = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(port)] + list(args),
                       capture_output=True, timeout=30)
    return r.stdout.decode().strip()


class TwoNodes(unittest.TestCase):
    """A SET through redis-cli on node B reaches a RESP3 tracker on node A."""

    def test_set_on_b_invalidates_a_tracker_on_a(self):
        a = start_node("--node.port-file=cluster.port")
        try:
            with open(os.path.join(a.dir, "cluster.port")) as f:
                seed = int(f.read().strip())
            b = start_node('--karlton.cluster.seeds=["127.0.0.1:%d"]' % seed)
            try:
                self.walkthrough(a, b)
            finally:
                b.stop()
        finally:
            a.stop()

    def walkthrough(self, a, b):
        tracker = Resp3(a.resp_port)
        try:
            self.assertEqual(tracker.call("CLIENT", "TRACKING", "ON"), "OK")
            # B's first invalidations go out once it has joined; until then a
            # SET there reaches nobody. Each try waits on A's socket.
            deadline = time.monotonic() + 20
            tried = []
            while True:
                key = "shared:%d" % len(tried)
                tried.append(key.encode())
                self.assertIsNone(tracker.call("GET", key))
                self.assertEqual(cli(b.resp_port, "SET", key, "from-b"), "OK")
                try:
                    push = tracker.next_push(timeout=1.0)
                    break
                except socket.timeout:
                    self.assertLess(time.monotonic(), deadline,
                                    "no invalidation from node B within 20 s")
            keys = invalidated(push)
            self.assertEqual(len(keys), 1)
            self.assertIn(keys[0], tried)
            # Once joined, every SET on B reaches A (late messages for keys
            # tried before may come first).
            self.assertIsNone(tracker.call("GET", "shared:again"))
            self.assertEqual(cli(b.resp_port, "SET", "shared:again", "x"), "OK")
            while True:
                keys = invalidated(tracker.next_push())
                if keys == [b"shared:again"]:
                    break
                self.assertEqual(len(keys), 1)
                self.assertIn(keys[0], tried)
        finally:
            tracker.close()


class Eviction(unittest.TestCase):
    def test_eviction_reaches_the_tracker(self):
        node = start_node("--karlton.shards=1", "--karlton.max-entries=2",
                          "--karlton.policy=lru")  # e:0 is the oldest: it goes
        self.addCleanup(node.stop)
        writer = redis.Redis(port=node.resp_port, single_connection_client=True)
        self.addCleanup(writer.close)
        tracker = Resp3(node.resp_port)
        self.addCleanup(tracker.close)
        self.assertEqual(tracker.call("CLIENT", "TRACKING", "ON"), "OK")
        self.assertIsNone(tracker.call("GET", "e:0"))
        writer.set("e:0", "v")  # its own message first (see SingleNode.prime)
        self.assertEqual(invalidated(tracker.next_push()), [b"e:0"])
        self.assertEqual(tracker.call("GET", "e:0"), b"v")
        for i in range(1, 6):  # more than max-entries newer keys: e:0 must go
            writer.set("e:%d" % i, "v")
        self.assertEqual(invalidated(tracker.next_push()), [b"e:0"])
        self.assertIsNone(writer.get("e:0"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
