"""One `tpinfer --serve` job for the end-to-end server tests (openai_client_test.py,
check_lm_eval.py, structured_test.py): started in its own process group with its output in a log,
ready once /health answers 200, stopped with SIGTERM (SIGKILL past a bound)."""

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request


class ServerFailed(Exception):
    """The server exited or never answered /health (the message ends with its log's tail)."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """cmd: the job's command line without --serve (it gets one on a free loopback port)."""

    def __init__(self, name, cmd, log_path, health_wait_s, env=None):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.cmd = list(cmd) + ["--serve", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env=dict(os.environ, **(env or {})))
        deadline = time.time() + health_wait_s
        while True:
            if self.proc.poll() is not None:
                raise ServerFailed(f"server {name} exited ({self.proc.returncode}) before "
                                   f"/health: {self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.time() > deadline:
                raise ServerFailed(f"server {name}: no /health 200 in {health_wait_s} s: "
                                   f"{self.tail()}")
            time.sleep(0.3)

    def tail(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()[-3000:]

    def stop(self, bound_s=120):
        """SIGTERM to the whole job (an orderly stop), SIGKILL if it still runs after bound_s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=bound_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.log.close()
