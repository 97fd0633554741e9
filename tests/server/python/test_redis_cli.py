"""redis-cli against karlton-node (resp.md §8): the commands that work,
piped pipelines, RESP3 through HELLO 3, and AUTH with the password kept out
of the node's stderr and command line."""

import os
import shutil
import subprocess
import unittest

from harness import NodeTestCase, start_node

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def cli(port, *args, stdin=None, resp3=False):
    argv = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port)]
    if resp3:
        argv.append("-3")
    r = subprocess.run(argv + list(args), input=stdin, capture_output=True, timeout=30)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


class Commands(NodeTestCase):
    node_args = ()

    def out(self, *args):
        rc, out, err = cli(self.port, *args)
        self.assertEqual(rc, 0, err)
        return out.rstrip("\n")

    def test_ping_and_echo(self):
        self.assertEqual(self.out("PING"), "PONG")
        self.assertEqual(self.out("PING", "hi"), "hi")
        self.assertEqual(self.out("ECHO", "hello world"), "hello world")

    def test_set_get_del(self):
        self.assertEqual(self.out("SET", "cli:k", "v1"), "OK")
        self.assertEqual(self.out("GET", "cli:k"), "v1")
        self.assertEqual(self.out("DEL", "cli:k"), "1")
        self.assertEqual(self.out("GET", "cli:k"), "")
        self.assertEqual(self.out("DEL", "cli:k"), "0")

    def test_binary_safe_value(self):
        rc, out, err = cli(self.port, "-x", "SET", "cli:bin", stdin=b"a\x00b\r\nc")
        self.assertEqual((rc, out.strip()), (0, "OK"), err)
        r = subprocess.run([REDIS_CLI, "-p", str(self.port), "--no-raw", "GET", "cli:bin"],
                           capture_output=True, timeout=30)
        self.assertEqual(r.stdout.strip(), b'"a\\x00b\\r\\nc"')

    def test_piped_pipeline_answers_in_order(self):
        lines = ["SET cli:p%d %d" % (i, i) for i in range(200)]
        lines += ["GET cli:p%d" % i for i in range(200)]
        rc, out, err = cli(self.port, stdin=("\n".join(lines) + "\n").encode())
        self.assertEqual(rc, 0, err)
        replies = out.splitlines()
        self.assertEqual(replies, ["OK"] * 200 + [str(i) for i in range(200)])

    def test_quit_ends_the_connection(self):
        self.assertEqual(self.out("QUIT"), "OK")

    def test_hello_3(self):
        rc, out, err = cli(self.port, "HELLO", "3", resp3=True)
        self.assertEqual(rc, 0, err)
        # A map prints as "field value" lines without a terminal (as Redis 7's).
        self.assertIn("proto 3", out.splitlines())

    def test_unknown_command(self):
        rc, out, err = cli(self.port, "NOSUCHCOMMAND", "x")
        self.assertIn("ERR unknown command", out + err)


class Auth(unittest.TestCase):
    PASSWORD = "correct-horse-battery-7"

    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.dir = tempfile.mkdtemp(prefix="karlton-resp-auth-")
        path = os.path.join(cls.dir, "password")
        with open(path, "w") as f:
            f.write(cls.PASSWORD + "\n")
        os.chmod(path, 0o600)
        cls.node = start_node("--node.requirepass-file=" + path)
        cls.port = cls.node.resp_port

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_noauth_wrongpass_ok(self):
        _, out, _ = cli(self.port, "GET", "k")
        self.assertEqual(out.strip(), "NOAUTH Authentication required.")
        _, out, _ = cli(self.port, "AUTH", "wrong")
        self.assertEqual(out.strip(),
                         "WRONGPASS invalid username-password pair or user is disabled.")
        _, out, _ = cli(self.port, "AUTH", "default", "wrong")
        self.assertIn("WRONGPASS", out)
        rc, out, err = cli(self.port, "--no-auth-warning", "-a", self.PASSWORD, "SET", "k", "v")
        self.assertEqual((rc, out.strip()), (0, "OK"), err)
        stdin = ("AUTH %s\nGET k\n" % self.PASSWORD).encode()
        _, out, _ = cli(self.port, stdin=stdin)
        self.assertEqual(out.splitlines(), ["OK", "v"])

    def test_the_password_is_in_neither_the_arguments_nor_stderr(self):
        with open("/proc/%d/cmdline" % self.node.proc.pid, "rb") as f:
            self.assertNotIn(self.PASSWORD.encode(), f.read())
        cli(self.port, "AUTH", "wrong")
        cli(self.port, "--no-auth-warning", "-a", self.PASSWORD, "PING")
        self.node.stop()
        self.assertNotIn(self.PASSWORD, self.node.stderr())


if __name__ == "__main__":
    unittest.main()
