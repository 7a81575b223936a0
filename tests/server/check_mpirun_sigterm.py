#!/usr/bin/env python3
"""`kill` on scripts/mpirun.sh drains like scancel (issue 21).

Starts `scripts/mpirun.sh -np 2 tpinfer --serve` (a 100M Llama shape, dummy weights, tp 2, so a
stream lasts seconds), opens a streaming completion of 96 tokens and, once its first tokens have
arrived, sends SIGTERM to the mpirun.sh process (what `kill PID` or a service manager's stop
does). The stream must complete (96 tokens, finish_reason "length", [DONE]), a new request must
be refused (503 or connection refused), and mpirun.sh must exit 0 within shutdown_grace_s.
Stdlib only. Usage: check_mpirun_sigterm.py TPINFER WORK_DIR
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

BIN, WORK = sys.argv[1], sys.argv[2]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRACE_S = 60
N = 96


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def main():
    os.makedirs(WORK, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(os.path.join(WORK, "mpirun-sigterm.log"), "w")
    env = dict(os.environ, TPINFER_LAUNCH_QUIET="1")
    p = subprocess.Popen([os.path.join(ROOT, "scripts", "mpirun.sh"), "-np", "2", BIN,
                          "--model", os.path.join(ROOT, "configs", "models", "llama-100m"),
                          "--dummy-weights", "--tokenizer",
                          os.path.join(ROOT, "configs", "tokenizers", "mistral"),
                          "--threads", "1", "--serve", f"127.0.0.1:{port}",
                          "--shutdown-grace-s", str(GRACE_S)],
                         stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        t0 = time.time()
        while True:
            if p.poll() is not None:
                fail(f"the server exited at start-up ({p.returncode}); see {log.name}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() - t0 > 300:
                fail("no /health in 300 s")
            time.sleep(0.3)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("POST", "/v1/completions", json.dumps(
            {"prompt": "Once upon a time", "max_tokens": N, "ignore_eos": True, "stream": True,
             "stream_options": {"include_usage": True}}), {"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            fail(f"the stream got {r.status}")
        events, signalled, t_sig, finish, usage, done = 0, False, None, None, None, False
        while True:
            line = r.fp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            data = line[6:]
            if data == b"[DONE]":
                done = True
                break
            j = json.loads(data)
            if "error" in j:
                fail(f"the stream ended with an error: {j}")
            if j.get("usage"):
                usage = j["usage"]
            for ch in j.get("choices", []):
                events += 1
                finish = ch.get("finish_reason") or finish
            if events >= 3 and not signalled:
                os.kill(p.pid, signal.SIGTERM)  # the mpirun.sh process
                signalled, t_sig = True, time.time()
                print(f"SIGTERM to mpirun.sh (pid {p.pid}) after {events} events", flush=True)
        if not signalled:
            fail("the stream ended before SIGTERM could be sent")
        if not done or finish != "length" or not usage or usage["completion_tokens"] != N:
            fail(f"the stream did not complete: done={done} finish={finish} usage={usage}")
        print(f"the stream completed {time.time() - t_sig:.1f} s after SIGTERM: {N} tokens, "
              f"finish_reason length, [DONE]", flush=True)
        try:
            c2 = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c2.request("GET", "/health")
            st = c2.getresponse().status
            if st != 503:
                fail(f"/health answered {st} during the drain (expected 503)")
        except OSError:
            pass  # already gone
        rc = p.wait(timeout=GRACE_S + 60)
        print(f"mpirun.sh exited {rc} {time.time() - t_sig:.1f} s after SIGTERM", flush=True)
        if rc != 0:
            fail(f"mpirun.sh exited {rc}; see {log.name}")
        print("PASS", flush=True)
    finally:
        if p.poll() is None:
            p.kill()


if __name__ == "__main__":
    main()
