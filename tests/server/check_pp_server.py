"""The server under pipeline stages (issue 19): `tpinfer --serve` under scripts/mpirun.sh -np 4
with pp 2 x tp 2 answers greedy completions with the single-prompt CLI's text (tp 2, no stages),
8 concurrent requests each with its own single-prompt text, an n = 2 greedy request with two
equal choices, and a repeated prompt (prefix cache hit) with the same text. Then streams cut off
by their clients mid-decode (cancelled while a step holding them is in flight: the decode
micro-batches) beside concurrent completions, which still equal the CLI. Stdlib only.
Usage: check_pp_server.py TPINFER STORIES_TP2_DIR STORIES_PP2_TP2_DIR WORK_DIR"""

import http.client
import json
import os
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_process import ServeProcess  # noqa: E402

BIN, REF, PP_MODEL, WORK = sys.argv[1:5]
ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MPIRUN = os.path.join(ROOT, "scripts", "mpirun.sh")
PROMPTS = ["Once upon a time", "The cat sat", "Tom had a dog", "Lily saw a bird",
           "One day, a little", "The sun was", "Ben and Mia", "A big red ball"]
N_TOKENS = 24


def cli_text(prompt):
    out = subprocess.run([MPIRUN, "-np", "2", BIN, "--model", REF, "--prompt", prompt,
                          "--max-new-tokens", str(N_TOKENS), "--temperature", "0",
                          "--ignore-eos"],
                         capture_output=True, text=True, timeout=120, check=True)
    text = out.stdout
    assert text.startswith(prompt), (prompt, text)
    return text[len(prompt):].rstrip("\n")


def served_model(url):
    with urllib.request.urlopen(url + "/v1/models", timeout=30) as r:
        return json.load(r)["data"][0]["id"]


def complete(url, prompt, n=1):
    body = {"model": served_model(url), "prompt": prompt, "max_tokens": N_TOKENS, "temperature": 0, "n": n,
            "ignore_eos": True}
    req = urllib.request.Request(url + "/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def stream_and_hang_up(url, prompt, n_chunks):
    """Streams a long completion, reads n_chunks events, then closes the connection."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    body = {"model": served_model(url), "prompt": prompt, "max_tokens": 300, "temperature": 0,
            "ignore_eos": True, "stream": True}
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    seen = 0
    while seen < n_chunks:
        line = resp.readline()
        assert line, "the stream ended early"
        seen += line.startswith(b"data: ")
    conn.close()
    return seen


def main():
    os.makedirs(WORK, exist_ok=True)
    want = {p: cli_text(p) for p in PROMPTS}
    print(f"{len(want)} single-prompt references (tp 2, no stages)")
    srv = ServeProcess("pp2-tp2", [MPIRUN, "-np", "4", BIN, "--model", PP_MODEL, "--pp", "2",
                                   "--tp", "2", "--batch-size", "8"],
                       os.path.join(WORK, "server-pp.log"), 120,
                       env={"TPINFER_LAUNCH_QUIET": "1"})
    try:
        with ThreadPoolExecutor(len(PROMPTS)) as pool:
            got = dict(zip(PROMPTS, pool.map(lambda p: complete(srv.url, p), PROMPTS)))
        for p in PROMPTS:
            text = got[p]["choices"][0]["text"]
            assert text == want[p], f"{p!r}: server {text!r} != CLI {want[p]!r}"
        print(f"{len(PROMPTS)} concurrent completions equal the CLI")
        again = complete(srv.url, PROMPTS[0])["choices"][0]["text"]
        assert again == want[PROMPTS[0]], (again, want[PROMPTS[0]])
        two = [c["text"] for c in complete(srv.url, PROMPTS[1], n=2)["choices"]]
        assert two == [want[PROMPTS[1]]] * 2, two
        print("a repeated prompt (cached prefix) and n = 2 greedy choices equal the CLI")
        with ThreadPoolExecutor(8) as pool:
            cut = [pool.submit(stream_and_hang_up, srv.url, p, 3 + i) for i, p in
                   enumerate(PROMPTS[:4])]
            full = list(pool.map(lambda p: complete(srv.url, p), PROMPTS[4:]))
            assert all(c.result() >= 3 for c in cut)
        for p, r in zip(PROMPTS[4:], full):
            assert r["choices"][0]["text"] == want[p], (p, r["choices"][0]["text"], want[p])
        again = complete(srv.url, PROMPTS[2])["choices"][0]["text"]
        assert again == want[PROMPTS[2]], (again, want[PROMPTS[2]])
        print("4 streams cut off mid-decode beside 4 completions: those and the next equal the CLI")
        with open(srv.log_path) as f:
            log = f.read()
        assert "dp 1 x pp 2 x tp 2" in log, "the server's line does not name the layout"
    finally:
        srv.stop()
    print("PASS")


if __name__ == "__main__":
    main()
