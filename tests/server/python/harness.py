"""Starts karlton-node children for the Redis-protocol tests.

start_node(*args) runs $KARLTON_NODE with --node.resp-port=0 (the kernel picks
the ports and the node prints them, so there is no free-port race), reads the
printed ports within 10 s, and returns a Node. A child dies with the test
process (PR_SET_PDEATHSIG); stop() sends SIGTERM, then SIGKILL. Each node gets
a temporary directory of its own, removed by stop().
"""

import ctypes
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

START_DEADLINE = 10.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def node_program():
    program = os.environ.get("KARLTON_NODE")
    if not program or not os.access(program, os.X_OK):
        raise unittest.SkipTest("KARLTON_NODE does not name the karlton-node program")
    return program


class Node:
    """One karlton-node child; `resp_port` and `metrics_port` as printed."""

    def __init__(self, args, metrics=False):
        self.dir = tempfile.mkdtemp(prefix="karlton-resp-test-")
        self.stderr_path = os.path.join(self.dir, "stderr")
        self.resp_port = None
        self.metrics_port = None
        argv = [node_program(), "--karlton.cluster.secret=test",
                "--karlton.cluster.port=0", "--node.stats-interval=0",
                "--node.resp-port=0"]
        if metrics:
            argv.append("--node.metrics-port=0")
        argv += list(args)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err,
                                         cwd=self.dir, preexec_fn=_die_with_parent)
        try:
            self._read_ports(metrics)
        except BaseException:
            self.stop()
            raise

    def _read_ports(self, metrics):
        deadline = time.monotonic() + START_DEADLINE
        pending = b""
        wanted = {"resp": True, "metrics": metrics}
        while wanted["resp"] or wanted["metrics"]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("karlton-node printed no ports within %.0f s: %s"
                                     % (START_DEADLINE, self.stderr()))
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError("karlton-node exited (%s): %s"
                                     % (self.proc.poll(), self.stderr()))
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                m = re.search(rb" (resp|metrics) on [^ ]*:(\d+)$", line)
                if m:
                    kind = m.group(1).decode()
                    setattr(self, kind + "_port", int(m.group(2)))
                    wanted[kind] = False

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def running(self):
        return self.proc.poll() is None

    def connect(self, timeout=10.0):
        s = socket.create_connection(("127.0.0.1", self.resp_port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def stop(self, grace=5.0):
        """SIGTERM, then SIGKILL after `grace`; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(60)
        if self.proc.stdout:
            self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


def start_node(*args, metrics=False):
    return Node(args, metrics=metrics)


class NodeTestCase(unittest.TestCase):
    """Test cases that share one node per class, started with node_args
    (and the metrics port if metrics is set); self.port is its RESP port."""

    node_args = ()
    metrics = False

    @classmethod
    def setUpClass(cls):
        cls.node = start_node(*cls.node_args, metrics=cls.metrics)
        cls.port = cls.node.resp_port

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()


def command(*args):
    """A command in RESP's multi-bulk form."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def read_until_eof(sock, deadline=10.0, limit=1 << 20):
    """Everything `sock` receives until EOF; raises if none comes in time."""
    sock.settimeout(deadline)
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk
        if len(out) > limit:
            raise AssertionError("no EOF after %d bytes" % len(out))


def read_exactly(sock, n, deadline=10.0):
    sock.settimeout(deadline)
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def node_from_argv():
    """For the scripts run by hand (bench/): the one argument names the
    karlton-node to start; without it, prints the usage and exits 2."""
    if len(sys.argv) != 2 or not os.access(sys.argv[1], os.X_OK):
        print("usage: %s PATH/TO/karlton-node (a Release build: cmake --build "
              "build-release --target karlton-node)" % sys.argv[0], file=sys.stderr)
        sys.exit(2)
    os.environ["KARLTON_NODE"] = os.path.abspath(sys.argv[1])  # nodes run elsewhere


def read_lines(sock, count, deadline):
    """Reads until `count` one-line replies arrived, by `deadline` (monotonic);
    raises on an error reply, returns what came."""
    got = b""
    while got.count(b"\r\n") < count:
        if time.monotonic() > deadline:
            raise AssertionError("no reply in time")
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise AssertionError("the node closed the connection")
        got += chunk
    if got.startswith(b"-") or b"\r\n-" in got:
        raise AssertionError("the node answered with an error: %r" % got[:200])
    return got


def ping(node):
    """True if a fresh connection gets +PONG for PING."""
    with node.connect() as s:
        s.sendall(command("PING"))
        return read_exactly(s, 7) == b"+PONG\r\n"


def wait_for(pred, limit=10.0, every=0.02):
    deadline = time.monotonic() + limit
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True

