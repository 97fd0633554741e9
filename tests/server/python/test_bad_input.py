"""Bad input reaches only its own connection (resp.md §4.4, §8).

Every malformed or oversized request is answered with "-ERR Protocol error
..." and then EOF, while a second connection's PING still answers and the node
keeps running; maxclients + 1 connections, a client that never reads
a reply over the output limit and an idle client (resp-timeout).
"""

import socket
import struct
import unittest

from harness import (NodeTestCase, command, ping, read_exactly, read_until_eof,
                     start_node, wait_for)

MAX_BULK = 64 * 1024
QUERY_LIMIT = 256 * 1024

# A session that answers commands is helper `session`'s work; until it is
# merged the I/O side closes every connection at once.


def read_bulk(sock):
    """One bulk string reply's bytes ($<n>, then n bytes and CRLF)."""
    header = b""
    while not header.endswith(b"\r\n"):
        byte = read_exactly(sock, 1)
        assert byte, "EOF before a bulk reply"
        header += byte
    assert header.startswith(b"$"), header
    return read_exactly(sock, int(header[1:-2]) + 2)[:-2]


def read_large(sock, n, deadline=60.0):
    """Up to `n` bytes, fewer at EOF; in place, as large replies need."""
    sock.settimeout(deadline)
    out = bytearray(n)
    view = memoryview(out)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            break
        got += k
    return bytes(out[:got])


def tcp_state(sock):
    """The kernel's TCP state of `sock` (1: established)."""
    return struct.unpack("B", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))[0]


class ProtocolErrors(NodeTestCase):
    node_args = ("--node.resp-max-bulk=%d" % MAX_BULK,
                 "--node.resp-max-args=1000",
                 "--node.resp-query-buffer-limit=%d" % QUERY_LIMIT)

    def answered_then_closed(self, data, why):
        other = self.node.connect()
        try:
            with self.node.connect() as bad:
                bad.sendall(data)
                reply = read_until_eof(bad)
            self.assertTrue(reply.startswith(b"-ERR Protocol error"), "%s: %r" % (why, reply[:200]))
            self.assertTrue(reply.endswith(b"\r\n"), why)
            other.sendall(command("PING"))
            self.assertEqual(read_exactly(other, 7), b"+PONG\r\n", why)
        finally:
            other.close()
        self.assertTrue(self.node.running(), why)

    def test_bad_multibulk_count(self):
        self.answered_then_closed(b"*abc\r\n", "a count that is no number")

    def test_negative_bulk_length(self):
        self.answered_then_closed(b"*1\r\n$-5\r\n", "$-5")

    def test_bulk_over_max_bulk(self):
        self.answered_then_closed(b"*1\r\n$%d\r\n" % (MAX_BULK + 1), "a $ over max-bulk")

    def test_huge_multibulk_count(self):
        self.answered_then_closed(b"*2000000\r\n", "*2000000")

    def test_long_inline_line(self):
        self.answered_then_closed(b"A" * (70 * 1024), "a 70 KiB inline line")

    def test_unbalanced_quotes(self):
        self.answered_then_closed(b'SET "foo bar\r\n', "unbalanced quotes")

    def test_binary_junk(self):
        self.answered_then_closed(b"*\xff\xfe\x00\x01\r\n", "binary junk")

    def test_bulk_without_dollar(self):
        self.answered_then_closed(b"*1\r\n:5\r\n", "':' where '$' belongs")

    def test_query_buffer_over_limit(self):
        arg = b"x" * (MAX_BULK - 1)
        data = b"*10\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for _ in range(5))
        self.assertGreater(len(data), QUERY_LIMIT)
        self.answered_then_closed(data, "an incomplete command over the query buffer limit")


class Limits(unittest.TestCase):
    def test_maxclients_plus_one_is_refused_and_the_others_still_work(self):
        node = start_node("--node.maxclients=3")
        try:
            held = [node.connect() for _ in range(3)]
            for s in held:
                s.sendall(command("PING"))
                self.assertEqual(read_exactly(s, 7), b"+PONG\r\n")
            with node.connect() as extra:
                self.assertEqual(read_until_eof(extra), b"-ERR max number of clients reached\r\n")
            for s in held:
                s.sendall(command("PING"))
                self.assertEqual(read_exactly(s, 7), b"+PONG\r\n")
            held.pop().close()
            self.assertTrue(wait_for(lambda: ping(node)), "a freed place is not taken again")
            for s in held:
                s.close()
        finally:
            node.stop()

    def test_a_client_that_reads_gets_a_value_of_the_largest_size(self):
        # The default output limit holds one such reply with its framing: it
        # was 64 MiB, and a GET, GETDEL or ECHO of a 64 MiB value (the default
        # max-value-bytes) closed the connection with no reply.
        size = 64 << 20
        value = b"v" * size
        node = start_node()
        try:
            with node.connect() as s:
                s.sendall(command("SET", "huge", value))
                self.assertEqual(read_exactly(s, 5, deadline=60.0), b"+OK\r\n")
                for cmd in (("GET", "huge"), ("GETDEL", "huge"), ("ECHO", value)):
                    s.sendall(command(*cmd))
                    header = b"$%d\r\n" % size
                    got = read_large(s, len(header) + size + 2)
                    self.assertEqual(len(got), len(header) + size + 2, cmd[0])
                    self.assertTrue(got.startswith(header), cmd[0])
                s.sendall(command("EXISTS", "huge"))
                self.assertEqual(read_exactly(s, 4), b":0\r\n")
            self.assertTrue(node.running())
        finally:
            node.stop()

    def test_a_client_that_never_reads_its_large_gets_is_closed(self):
        # One reply over the output limit closes it. (Many smaller ones only
        # pause it at node.resp-output-pause: see resp_server.test.cpp.)
        node = start_node("--node.resp-output-buffer-limit=%d" % (512 << 10))
        try:
            value = b"v" * (1 << 20)
            with node.connect() as s:
                s.sendall(command("SET", "big", value))
                self.assertEqual(read_exactly(s, 5), b"+OK\r\n")
            hog = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            hog.connect(("127.0.0.1", node.resp_port))
            gets = command("GET", "big") * 200
            hog.sendall(gets)
            # The server closes it: the kernel leaves ESTABLISHED (FIN or RST).
            self.assertTrue(wait_for(lambda: tcp_state(hog) != 1),
                            "a client over the output limit is still connected")
            hog.close()
            self.assertTrue(ping(node))
            self.assertTrue(node.running())
        finally:
            node.stop()

    def test_an_idle_client_is_closed_after_resp_timeout(self):
        node = start_node("--node.resp-timeout=1s")
        try:
            with node.connect() as idle:
                idle.sendall(command("PING"))
                self.assertEqual(read_exactly(idle, 7), b"+PONG\r\n")
                # The timeout plus one sweep period, well within the deadline.
                self.assertEqual(read_until_eof(idle, deadline=5.0), b"")
            self.assertTrue(ping(node))
        finally:
            node.stop()

    def test_a_client_that_never_authenticates_is_closed_after_resp_auth_timeout(self):
        node = start_node("--node.requirepass=pw", "--node.resp-auth-timeout=1s")
        try:
            with node.connect() as authed, node.connect() as silent:
                authed.sendall(command("AUTH", "pw"))
                self.assertEqual(read_exactly(authed, 5), b"+OK\r\n")
                # The timeout plus one sweep period, well within the deadline.
                self.assertEqual(read_until_eof(silent, deadline=5.0), b"")
                # Accepted first, so past its own timeout too: AUTH spared it.
                authed.sendall(command("PING"))
                self.assertEqual(read_exactly(authed, 7), b"+PONG\r\n")
                authed.sendall(command("INFO", "karlton"))
                self.assertIn(b"karlton_auth_timeouts:1\r\n", read_bulk(authed))
            self.assertTrue(node.running())
        finally:
            node.stop()


class Options(unittest.TestCase):
    """Bad values are refused with exit 2 and a message naming the option."""

    def refused(self, *args):
        import subprocess
        from harness import node_program
        r = subprocess.run([node_program(), "--karlton.cluster.secret=t",
                            "--karlton.cluster.port=0", "--node.resp-port=0"] + list(args),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        return r.stderr.decode()

    def test_bad_values_exit_2(self):
        self.assertIn("node.resp-threads", self.refused("--node.resp-threads=0"))
        self.assertIn("node.maxclients", self.refused("--node.maxclients=0"))
        self.assertIn("node.resp-port", self.refused("--node.resp-port=70000"))
        self.assertIn("node.resp-query-buffer-limit",
                      self.refused("--node.resp-max-bulk=1000",
                                   "--node.resp-query-buffer-limit=1000"))
        self.assertIn("node.resp-host", self.refused("--node.resp-host=0.0.0.0"))
        self.assertIn("node.resp-auth-timeout", self.refused("--node.resp-auth-timeout=-1s"))
        # /metrics as RESP: not on another address without a password (refused
        # before anything listens); a stats line or a heartbeat too often.
        self.assertIn("node.metrics-host",
                      self.refused("--node.metrics-port=0", "--node.metrics-host=0.0.0.0"))
        self.assertIn("node.stats-interval", self.refused("--node.stats-interval=10ms"))
        self.assertIn("karlton.cluster.heartbeat",
                      self.refused("--karlton.cluster.heartbeat=1ns",
                                   "--karlton.cluster.read-lease=2ns",
                                   "--karlton.cluster.member-timeout=2ns"))

    def test_a_password_file_must_be_a_small_regular_file(self):
        # /dev/zero was read forever, a FIFO blocked the start (timeout=30 fails it).
        self.assertIn("is not a regular file",
                      self.refused("--node.requirepass-file=/dev/zero"))
        import os
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            fifo = os.path.join(tmp, "fifo")
            os.mkfifo(fifo)
            self.assertIn("is not a regular file",
                          self.refused("--node.requirepass-file=" + fifo))
            big = os.path.join(tmp, "big")
            with open(big, "w") as f:
                f.write("p" * 5000 + "\n")
            self.assertIn("is over 4096 bytes", self.refused("--node.requirepass-file=" + big))

    def test_the_password_never_shows_in_an_error(self):
        err = self.refused("--node.requirepass=hunter2-secret", "--node.requirepass-file=/nope")
        self.assertNotIn("hunter2-secret", err)


if __name__ == "__main__":
    unittest.main()
