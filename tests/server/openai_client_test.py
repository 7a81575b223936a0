#!/usr/bin/env python3
"""End-to-end test of `tpinfer --serve` with the real `openai` client (issue 9, tests).

Run by check_server.sh inside a virtual environment that has `openai`. Starts the server under
scripts/mpirun.sh -np 4 (dp 2 x tp 2) on a free loopback port and checks, in order:
  greedy completions and chat (streaming and not) equal to the single-prompt CLI at tp 2;
  stream_options.include_usage; logprobs (completions and chat): shapes, greedy token = max;
  n = 3: greedy choices identical, seeded sampled choices reproducible and not all equal, a
  stream reassembled by index equal to the answer, usage over all choices;
  32 concurrent streaming clients, all with the single request's text;
  a client dropped mid-stream frees its slot (tpinfer_requests_running back to 0);
  every error case (400 x2, 404 x2, 413) answers OpenAI's error JSON and the server keeps serving;
  a second short server (-np 2, one slot, --max-queue 1, --api-key): 401, then 429 under a
  burst while the admitted requests complete, then SIGTERM to rank 0 alone -> exit 0;
  SIGTERM to every rank (as srun does) while streaming: the stream ends with [DONE], new
  requests are refused, mpirun exits 0.
Prints a short transcript (curl and openai-client outputs). Exits non-zero on the first failure.

Usage: openai_client_test.py TPINFER MODEL_DIR(stories260K-tp2) WORK_DIR
"""
import concurrent.futures
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_process import ServeProcess, ServerFailed  # noqa: E402

from openai import OpenAI

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN, MODEL, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
MPIRUN = os.path.join(ROOT, "scripts", "mpirun.sh")
HF_DIR = os.path.join(ROOT, "configs", "models", "stories260K")
PROMPT = "Once upon a time"
CHAT_PROMPT = "Tell me a story about a cat."
N_TOKENS = 24  # greedy comparisons
HEALTH_WAIT_S = 180  # a loaded 2-core machine starts 4 ranks slowly

# stories260K ships no chat template. This one was written for this test (it is no published
# model's template): BOS, one "role: content" line per message, then "assistant:".
CHAT_TEMPLATE = ("{# tpinfer tests/server: a minimal chat template written for this test #}"
                 "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
                 "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


T0 = time.time()


def say(*args):
    """One transcript line, stamped with the seconds since the start."""
    text = " ".join(str(a) for a in args)
    if text.startswith("\n"):  # a section: a blank line, then the stamped heading
        print(flush=True)
        text = text[1:]
    print(f"[{time.time() - T0:6.1f}s] {text}", flush=True)


def make_tokenizer_dir():
    """The bundled tokenizer files plus tokenizer_config.json's chat_template."""
    out = os.path.join(WORK, "tokenizer-chat")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(HF_DIR, "tokenizer.json"), "rb") as f:
        tok = f.read()
    with open(os.path.join(out, "tokenizer.json"), "wb") as f:
        f.write(tok)
    with open(os.path.join(HF_DIR, "tokenizer_config.json")) as f:
        cfg = json.load(f)
    cfg["chat_template"] = CHAT_TEMPLATE
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return out


def cli_text(tokdir, prompt, chat):
    """The single-prompt CLI's greedy text at tp 2 (stdout minus the trailing newline)."""
    cmd = [MPIRUN, "-np", "2", BIN, "--model", MODEL, "--tokenizer", tokdir, "--prompt", prompt,
           "--temperature", "0", "--max-new-tokens", str(N_TOKENS), "--echo=false"]
    if chat:
        cmd.append("--chat")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    check(r.returncode == 0, f"CLI failed ({r.returncode}): {r.stderr[-2000:]}")
    check(r.stdout.endswith("\n"), f"CLI output without a trailing newline: {r.stdout!r}")
    return r.stdout[:-1]


class Server(ServeProcess):
    """One `tpinfer --serve` job under mpirun.sh, in its own process group."""

    def __init__(self, name, np, extra, env=None, model=MODEL):
        self.np = np
        cmd = [MPIRUN, "-np", str(np), BIN] + (["--model", model] if model else []) + [
            "--tp", "2"] + extra
        try:
            super().__init__(name, cmd, os.path.join(WORK, f"{name}.log"), HEALTH_WAIT_S, env)
        except ServerFailed as e:
            raise Failure(str(e))

    def ranks(self):
        """pid of each rank, by OMPI_COMM_WORLD_RANK: the processes below scripts/mpirun.sh (it
        runs mpirun as its child, whose children the ranks are)."""
        parent = {}
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        parent[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue

        def below(pid):
            while pid in parent and pid > 1:
                pid = parent[pid]
                if pid == self.proc.pid:
                    return True
            return False

        found = {}
        for pid in parent:
            try:
                if not below(pid):
                    continue
                with open(f"/proc/{pid}/environ", "rb") as f:
                    for var in f.read().split(b"\0"):
                        if var.startswith(b"OMPI_COMM_WORLD_RANK="):
                            found[int(var.split(b"=")[1])] = int(pid)
            except (OSError, ValueError, IndexError):
                continue
        return found

    def wait_exit(self, bound_s):
        try:
            return self.proc.wait(timeout=bound_s)
        except subprocess.TimeoutExpired:
            raise Failure(f"mpirun still runs {bound_s} s after SIGTERM: {self.tail()}")


def call(method, url, body=None, headers=None, raw=None, timeout=120):
    """(status, parsed JSON or text) of one request; raw: bytes sent as they are."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def curl(args):
    """Runs curl for the transcript and returns its output."""
    r = subprocess.run(["curl", "-sS", "--max-time", "60"] + args, capture_output=True, text=True)
    check(r.returncode == 0, f"curl {' '.join(args)} failed: {r.stderr}")
    shown = " ".join(a if " " not in a and "{" not in a else f"'{a}'" for a in args)
    say(f"$ curl -s {shown}")
    out = r.stdout.strip()
    say("  " + (out if len(out) < 600 else out[:600] + " ..."))
    return out


def metric(url, name):
    _, text = call("GET", url + "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    raise Failure(f"/metrics has no {name}")


def sse_stream(url, path, body, headers=None, timeout=120):
    """An open streaming request: (connection, response) to read with sse_events."""
    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    conn.request("POST", path, json.dumps(body), h)
    resp = conn.getresponse()
    if resp.status != 200:  # (not check(): its message would read the whole stream)
        raise Failure(f"stream {path}: status {resp.status} {resp.read()[:300]!r}")
    return conn, resp


def sse_events(resp):
    """The data of each event; '[DONE]' as the string."""
    while True:
        line = resp.readline()
        if not line:
            return
        line = line.strip()
        if line.startswith(b"data: "):
            data = line[6:].decode()
            yield data if data == "[DONE]" else json.loads(data)


def expect_error(status, body, want_status, what, param=None, code=None):
    check(status == want_status, f"{what}: status {status}, expected {want_status}: {body}")
    check(isinstance(body, dict) and isinstance(body.get("error"), dict),
          f"{what}: not OpenAI's error JSON: {body}")
    err = body["error"]
    for key in ("message", "type", "param", "code"):
        check(key in err, f"{what}: error JSON without '{key}': {body}")
    check(err["message"], f"{what}: empty error message")
    if param is not None:
        check(err["param"] == param, f"{what}: param {err['param']!r}, expected {param!r}")
    if code is not None:
        check(err["code"] == code, f"{what}: code {err['code']!r}, expected {code!r}")
    say(f"  {what}: {status} {json.dumps(err)[:200]}")


# --- the checks ------------------------------------------------------------------------------


def check_greedy(client, model, ref_text, ref_chat):
    say("\n# openai client: greedy completions and chat, streaming and not, equal to the CLI")
    r = client.completions.create(model=model, prompt=PROMPT, max_tokens=N_TOKENS, temperature=0)
    say(f">>> client.completions.create(prompt={PROMPT!r}, max_tokens={N_TOKENS}, temperature=0)")
    say(f"  text={r.choices[0].text!r} finish_reason={r.choices[0].finish_reason} usage={r.usage}")
    check(r.object == "text_completion" and r.model == model, f"completion object: {r}")
    check(r.choices[0].text == ref_text, f"completion {r.choices[0].text!r} != CLI {ref_text!r}")
    check(r.usage.completion_tokens <= N_TOKENS and r.usage.prompt_tokens > 0, f"usage {r.usage}")
    check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "total_tokens")

    parts = []
    for chunk in client.completions.create(model=model, prompt=PROMPT, max_tokens=N_TOKENS,
                                           temperature=0, stream=True):
        if chunk.choices:
            parts.append(chunk.choices[0].text)
    say(f">>> the same, stream=True: {len(parts)} chunks, text={''.join(parts)!r}")
    check("".join(parts) == ref_text, f"streamed completion {''.join(parts)!r} != {ref_text!r}")

    msgs = [{"role": "user", "content": CHAT_PROMPT}]
    c = client.chat.completions.create(model=model, messages=msgs, max_tokens=N_TOKENS,
                                       temperature=0)
    say(f">>> client.chat.completions.create(messages={msgs}, max_tokens={N_TOKENS}, temperature=0)")
    say(f"  role={c.choices[0].message.role} content={c.choices[0].message.content!r} usage={c.usage}")
    check(c.object == "chat.completion" and c.choices[0].message.role == "assistant", f"chat: {c}")
    check(c.choices[0].message.content == ref_chat,
          f"chat {c.choices[0].message.content!r} != CLI --chat {ref_chat!r}")

    parts, roles, finish, usage = [], [], None, None
    for chunk in client.chat.completions.create(model=model, messages=msgs, max_tokens=N_TOKENS,
                                                temperature=0, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.choices:
            d = chunk.choices[0].delta
            if d.role:
                roles.append(d.role)
            parts.append(d.content or "")
            finish = chunk.choices[0].finish_reason or finish
            check(chunk.usage is None, "a chunk with choices carries usage")
        else:
            usage = chunk.usage
    say(f">>> the same, stream=True, include_usage: {len(parts)} chunks, "
        f"text={''.join(parts)!r}, finish_reason={finish}, usage={usage}")
    check("".join(parts) == ref_chat, f"streamed chat {''.join(parts)!r} != {ref_chat!r}")
    check(roles == ["assistant"], f"roles in the deltas: {roles}")
    check(finish in ("stop", "length"), f"finish_reason {finish}")
    check(usage is not None and usage.completion_tokens == c.usage.completion_tokens
          and usage.prompt_tokens == c.usage.prompt_tokens, f"stream usage {usage} vs {c.usage}")


def check_choices(client, url, model, ref_text):
    """n > 1: greedy choices are identical (and equal the CLI); sampled choices with a seed are
    reproducible and not all equal; a stream reassembled by index equals the answer; usage
    counts the prompt once and every choice's tokens; logprobs per choice."""
    say("\n# n = 3 choices")
    r = client.completions.create(model=model, prompt=PROMPT, max_tokens=N_TOKENS, temperature=0,
                                  n=3)
    texts = [c.text for c in r.choices]
    say(f">>> client.completions.create(prompt={PROMPT!r}, n=3, temperature=0): {texts}")
    check([c.index for c in r.choices] == [0, 1, 2], f"choice indexes {[c.index for c in r.choices]}")
    check(texts == [ref_text] * 3, f"greedy choices {texts} != 3 x CLI {ref_text!r}")
    one = client.completions.create(model=model, prompt=PROMPT, max_tokens=N_TOKENS,
                                    temperature=0)
    check(r.usage.prompt_tokens == one.usage.prompt_tokens,
          f"usage.prompt_tokens {r.usage.prompt_tokens} != one choice's {one.usage.prompt_tokens}")
    check(r.usage.completion_tokens == 3 * one.usage.completion_tokens,
          f"usage.completion_tokens {r.usage.completion_tokens} != 3 x {one.usage.completion_tokens}")

    sampled = dict(model=model, prompt=PROMPT, max_tokens=16, temperature=1.0, seed=1234, n=3,
                   logprobs=1)
    a = client.completions.create(**sampled)
    b = client.completions.create(**sampled)
    ta, tb = [c.text for c in a.choices], [c.text for c in b.choices]
    say(f">>> n=3, temperature=1, seed=1234, twice: {ta}")
    check(ta == tb, f"seeded choices differ between two calls: {ta} vs {tb}")
    check(len(set(ta)) > 1, f"all 3 sampled choices are equal: {ta}")
    for c in a.choices:
        check(c.logprobs is not None and len(c.logprobs.tokens) == len(c.logprobs.token_logprobs)
              and "".join(c.logprobs.tokens) == c.text, f"choice {c.index} logprobs {c.logprobs}")

    parts, finish, usage = {}, {}, None
    for chunk in client.completions.create(**dict(sampled, stream=True,
                                                  stream_options={"include_usage": True})):
        if not chunk.choices:
            usage = chunk.usage
            continue
        c = chunk.choices[0]
        parts.setdefault(c.index, []).append(c.text)
        if c.finish_reason:
            check(c.index not in finish, f"choice {c.index} finished twice")
            finish[c.index] = c.finish_reason
    streamed = ["".join(parts.get(i, [])) for i in range(3)]
    say(f">>> the same, stream=True, reassembled by index: {streamed}, finish {finish}")
    check(streamed == ta, f"streamed choices {streamed} != non-streaming {ta}")
    check(sorted(finish) == [0, 1, 2], f"finish_reason per choice: {finish}")
    check(usage is not None and usage.completion_tokens == a.usage.completion_tokens
          and usage.prompt_tokens == a.usage.prompt_tokens, f"stream usage {usage} vs {a.usage}")

    msgs = [{"role": "user", "content": CHAT_PROMPT}]
    c = client.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0.8,
                                       seed=7, n=2)
    check([x.index for x in c.choices] == [0, 1] and all(x.message.role == "assistant"
                                                         for x in c.choices), f"chat n=2: {c}")
    s, body = call("POST", url + "/v1/completions", {"prompt": PROMPT, "n": 129})
    expect_error(s, body, 400, "n = 129", param="n")
    s, body = call("POST", url + "/v1/completions", {"prompt": PROMPT, "n": 9})
    expect_error(s, body, 400, "n = 9 > batch_size 8", param="n")
    say("  chat n=2: two assistant choices; n=129 and n=9 (> batch_size): 400 naming 'n'")


def check_logprobs(client, model):
    say("\n# logprobs")
    r = client.completions.create(model=model, prompt=PROMPT, max_tokens=8, temperature=0,
                                  logprobs=2)
    lp = r.choices[0].logprobs
    n = r.usage.completion_tokens
    check(len(lp.tokens) == n and len(lp.token_logprobs) == n and len(lp.top_logprobs) == n
          and len(lp.text_offset) == n, f"completions logprobs lengths vs {n} tokens: {lp}")
    for tok, val, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        # Two ids may decode to the same string: the dict then holds fewer than 2 keys.
        check(1 <= len(top) <= 2, f"top_logprobs {top}")
        check(val <= 0 and val >= max(top.values()) - 1e-4,
              f"greedy token {tok!r} logprob {val} below the top {top}")
    check(lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset), "text_offset")
    say(f"  completions logprobs=2: tokens={lp.tokens[:4]}... token_logprobs="
        f"{[round(v, 3) for v in lp.token_logprobs[:4]]}... top_logprobs[0]={lp.top_logprobs[0]}")

    c = client.chat.completions.create(model=model, max_tokens=8, temperature=0, logprobs=True,
                                       top_logprobs=2,
                                       messages=[{"role": "user", "content": CHAT_PROMPT}])
    content = c.choices[0].logprobs.content
    check(len(content) == c.usage.completion_tokens, "chat logprobs: one entry per token")
    for e in content:
        check(len(e.top_logprobs) == 2, f"chat top_logprobs {e.top_logprobs}")
        check(isinstance(e.bytes, list) and all(0 <= b < 256 for b in e.bytes), f"bytes {e.bytes}")
        best = max(t.logprob for t in e.top_logprobs)
        check(abs(e.logprob - best) < 1e-4, f"greedy token {e.token!r} {e.logprob} != max {best}")
        check(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob, "top_logprobs order")
    say(f"  chat logprobs=true top_logprobs=2: content[0]={content[0].model_dump()}")

    # Usage in a completions stream too.
    usage = [ch.usage for ch in client.completions.create(
        model=model, prompt=PROMPT, max_tokens=5, temperature=0, stream=True,
        stream_options={"include_usage": True}) if not ch.choices]
    check(len(usage) == 1 and 1 <= usage[0].completion_tokens <= 5,
          f"completions stream usage {usage}")
    say(f"  completions stream include_usage: {usage[0]}")


def check_concurrent(url, model, ref_text):
    say("\n# 32 concurrent streaming clients")
    n, bound_s = 32, 240

    def one(i):
        client = OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=bound_s)
        text = ""
        for chunk in client.completions.create(model=model, prompt=PROMPT, max_tokens=N_TOKENS,
                                               temperature=0, stream=True):
            if chunk.choices:
                text += chunk.choices[0].text
        return text

    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        done, not_done = concurrent.futures.wait(futures, timeout=bound_s)
        check(not not_done, f"{len(not_done)} of {n} streams unfinished after {bound_s} s")
        texts = [f.result() for f in futures]
    wrong = [t for t in texts if t != ref_text]
    check(not wrong, f"{len(wrong)} of {n} streams differ from the single request: {wrong[:2]}")
    say(f"  {n} streams complete in {time.time() - t0:.1f} s (loaded machine), all equal to the "
        f"single request's text")


def check_errors(url, model, ref_text):
    say("\n# error cases: status and OpenAI error JSON; the server keeps serving")
    comp = url + "/v1/completions"
    good = {"model": model, "prompt": PROMPT, "max_tokens": N_TOKENS, "temperature": 0}

    def still_serving():
        status, body = call("POST", comp, good)
        check(status == 200 and body["choices"][0]["text"] == ref_text, f"not serving: {body}")

    s, b = call("POST", comp, dict(good, temperature="hot"))
    expect_error(s, b, 400, "temperature \"hot\"", param="temperature")
    still_serving()
    s, b = call("POST", comp, dict(good, prompt=" ".join(["Once upon a time"] * 200)))
    expect_error(s, b, 400, "prompt longer than max_seq", code="context_length_exceeded")
    still_serving()
    s, b = call("POST", comp, dict(good, model="gpt-4o"))
    expect_error(s, b, 404, "unknown model", code="model_not_found")
    check("gpt-4o" in b["error"]["message"], "the 404 names the model")
    still_serving()
    s, b = call("POST", comp, dict(good, prompt="x" * 20000))
    expect_error(s, b, 413, "body over --max-request-bytes 16384")
    still_serving()
    s, b = call("POST", url + "/v1/embeddings", {"model": model, "input": "hi"})
    expect_error(s, b, 404, "unknown route POST /v1/embeddings")
    s, b = call("GET", comp)
    expect_error(s, b, 405, "GET /v1/completions")
    s, b = call("POST", comp, raw=b"{not json")
    expect_error(s, b, 400, "malformed JSON")
    still_serving()
    say("  the server answered a good request after each")


def check_dropped_client(srv, auth):
    """On the one-slot server: a long stream is dropped; the slot must take the next request
    long before the dropped one could have finished."""
    say("\n# a client dropped mid-stream frees its slot (one slot, ~3000 tokens asked)")
    url = srv.url
    conn, resp = sse_stream(url, "/v1/completions", {
        "prompt": PROMPT, "stream": True, "ignore_eos": True, "max_tokens": 3000},
        headers=auth)
    got = 0
    for _ in sse_events(resp):
        got += 1
        if got == 3:
            break
    running = metric(url, "tpinfer_requests_running")
    check(running == 1, f"tpinfer_requests_running {running} while the stream runs")
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    t0 = time.time()
    while metric(url, "tpinfer_requests_running") != 0:
        check(time.time() - t0 < 60, "tpinfer_requests_running not back to 0 within 60 s")
        time.sleep(0.2)
    freed = time.time() - t0
    s, b = call("POST", url + "/v1/completions", {"prompt": PROMPT, "max_tokens": 4},
                headers=auth, timeout=60)
    check(s == 200 and b["usage"]["completion_tokens"] >= 1, f"the next request: {s} {b}")
    say(f"  closed after {got} chunks (running was {running:g}); tpinfer_requests_running 0 after "
        f"{freed:.1f} s; the next request took the slot and completed "
        f"{time.time() - t0:.1f} s after the drop")


def check_slow_server():
    """A second server, slow on purpose (a 100M Llama shape, dummy weights, ~10 tokens/s on a
    loaded 2-core machine): -np 2 = one replica of tp 2 with ONE slot, --max-queue 1, an API
    key from TPINFER_API_KEY. 401, 429 under a burst, a dropped client, then SIGTERM to every
    rank (as srun does) while a stream runs."""
    say("\n# second server: llama-100m shape (dummy weights), -np 2, --batch-size 1 "
        "--max-queue 1, TPINFER_API_KEY set")
    key = "sk-servertest"
    srv = Server("server-slow", 2,
                 ["--model", os.path.join(ROOT, "configs", "models", "llama-100m"),
                  "--dummy-weights", "--tokenizer", os.path.join(ROOT, "configs", "tokenizers",
                                                                  "mistral"),
                  "--batch-size", "1", "--max-queue", "1", "--shutdown-grace-s", "120"],
                 env={"TPINFER_API_KEY": key}, model=None)
    try:
        comp = srv.url + "/v1/completions"
        body = {"prompt": PROMPT, "max_tokens": 4, "temperature": 0}
        s, b = call("POST", comp, body)
        expect_error(s, b, 401, "no API key", code="invalid_api_key")
        s, b = call("POST", comp, body, headers={"Authorization": "Bearer wrong"})
        expect_error(s, b, 401, "wrong API key", code="invalid_api_key")
        s, _ = call("GET", srv.url + "/health")
        check(s == 200, f"/health needs no key, got {s}")
        auth = {"Authorization": f"Bearer {key}"}
        s, b = call("POST", comp, body, headers=auth)
        check(s == 200, f"with the key: {s} {b}")
        say("  with the key: 200")

        n = 6
        burst = dict(body, max_tokens=16, ignore_eos=True)
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            results = list(pool.map(lambda _: call("POST", comp, burst, headers=auth, timeout=240),
                                    range(n)))
        codes = sorted(s for s, _ in results)
        say(f"  {n} requests at once on one slot and a queue of 1: statuses {codes}")
        rejected = [b for s, b in results if s == 429]
        check(rejected, "no 429 from a full queue")
        expect_error(429, rejected[0], 429, "full queue")
        check(all(s in (200, 429) for s, _ in results), f"statuses {codes}")
        check(codes.count(200) >= 1, "no request admitted")
        for s, b in results:
            if s == 200:
                check(b["usage"]["completion_tokens"] == 16, f"admitted request: {b['usage']}")
        s, b = call("POST", comp, body, headers=auth)
        check(s == 200, f"after the burst: {s} {b}")
        say("  the admitted ones completed with 16 tokens each; the next request: 200")

        check_dropped_client(srv, auth)
        check_sigterm_while_streaming(srv, auth)
    except Failure:
        say(f"--- slow server log (tail)\n{srv.tail()}")
        raise
    finally:
        srv.kill()


def check_sigterm_while_streaming(srv, auth):
    say("\n# SIGTERM to every rank (as srun does) while a stream runs")
    max_tokens = 150  # ~15 s on a loaded 2-core machine, well within the grace
    conn, resp = sse_stream(srv.url, "/v1/completions", {
        "prompt": PROMPT, "stream": True,
        "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0,
        "stream_options": {"include_usage": True}}, headers=auth, timeout=180)
    events = sse_events(resp)
    first = [next(events) for _ in range(3)]
    ranks = srv.ranks()
    check(sorted(ranks) == list(range(srv.np)), f"ranks found among mpirun's children: {ranks}")
    for pid in ranks.values():
        os.kill(pid, signal.SIGTERM)
    t0 = time.time()
    # New requests are refused: 503 or connection refused.
    refused = None
    while refused is None and time.time() - t0 < 60:
        try:
            s, b = call("POST", srv.url + "/v1/completions",
                        {"prompt": PROMPT, "max_tokens": 2}, headers=auth, timeout=60)
            if s == 503:
                expect_error(s, b, 503, "new request after SIGTERM")
                refused = "503"
            else:
                check(s == 200, f"after SIGTERM: {s} {b}")  # sent before the signal was seen
                time.sleep(0.1)
        except (urllib.error.URLError, ConnectionError) as e:
            refused = f"connection refused ({e})"
    check(refused is not None, "new requests still served 60 s after SIGTERM")
    rest = list(events)
    evs = first + rest
    check(rest and rest[-1] == "[DONE]", f"the stream did not end with [DONE]: {rest[-3:]}")
    finish = [e["choices"][0]["finish_reason"] for e in evs
              if isinstance(e, dict) and e.get("choices") and e["choices"][0]["finish_reason"]]
    usage = [e["usage"] for e in evs if isinstance(e, dict) and not e.get("choices")
             and e.get("usage")]
    check(not any(isinstance(e, dict) and "error" in e for e in evs), f"error event: {evs[-3:]}")
    check(len(finish) == 1 and len(usage) == 1, f"finish {finish}, usage {usage}")
    # The grace (120 s) outlasts the stream: it is complete.
    check(finish[0] == "length" and usage[0]["completion_tokens"] == max_tokens,
          f"the stream was cut: finish {finish[0]}, usage {usage[0]}")
    conn.close()
    say(f"  new requests refused ({refused}); the open stream went on to all {max_tokens} "
        f"tokens, finish_reason={finish[0]}, then [DONE]")
    rc = srv.wait_exit(120)
    check(rc == 0, f"mpirun exit {rc} after SIGTERM to every rank: {srv.tail()}")
    say(f"  mpirun exited 0 {time.time() - t0:.1f} s after the SIGTERM")


def check_sigterm_rank0(srv):
    say("\n# main server: SIGTERM to rank 0 alone")
    ranks = srv.ranks()
    check(0 in ranks, f"rank 0 not found among mpirun's children: {ranks}")
    os.kill(ranks[0], signal.SIGTERM)
    t0 = time.time()
    rc = srv.wait_exit(120)
    check(rc == 0, f"exit {rc} after SIGTERM to rank 0: {srv.tail()}")
    say(f"  mpirun exited 0 after {time.time() - t0:.1f} s")


def main():
    os.makedirs(WORK, exist_ok=True)
    t_start = time.time()
    tokdir = make_tokenizer_dir()
    say("# references: the single-prompt CLI at tp 2, greedy")
    ref_text = cli_text(tokdir, PROMPT, chat=False)
    ref_chat = cli_text(tokdir, CHAT_PROMPT, chat=True)
    say(f"  tpinfer --prompt {PROMPT!r}: {ref_text!r}")
    say(f"  tpinfer --chat --prompt {CHAT_PROMPT!r}: {ref_chat!r}")
    check(ref_text and ref_chat, "an empty reference text")

    srv = Server("server-main", 4, ["--tokenizer", tokdir, "--max-request-bytes", "16384",
                                    "--shutdown-grace-s", "60"])
    try:
        model = os.path.basename(MODEL.rstrip("/"))
        say(f"\n# server: mpirun -np 4 (dp 2 x tp 2) at {srv.url}")
        curl([srv.url + "/health"])
        models = json.loads(curl([srv.url + "/v1/models"]))
        check(models["data"][0]["id"] == model, f"/v1/models: {models}")
        out = json.loads(curl([srv.url + "/v1/completions", "-H", "Content-Type: application/json",
                               "-d", json.dumps({"model": model, "prompt": PROMPT,
                                                 "max_tokens": N_TOKENS, "temperature": 0})]))
        check(out["choices"][0]["text"] == ref_text, f"curl completion: {out}")
        curl(["-N", srv.url + "/v1/chat/completions", "-H", "Content-Type: application/json",
              "-d", json.dumps({"messages": [{"role": "user", "content": CHAT_PROMPT}],
                                "max_tokens": 3, "temperature": 0, "stream": True,
                                "stream_options": {"include_usage": True}})])

        client = OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=120)
        check(client.models.list().data[0].id == model, "client.models.list()")
        check_greedy(client, model, ref_text, ref_chat)
        check_logprobs(client, model)
        check_choices(client, srv.url, model, ref_text)
        check_concurrent(srv.url, model, ref_text)
        check_errors(srv.url, model, ref_text)
        say("\n$ curl -s " + srv.url + "/metrics | grep -E '^tpinfer_(requests_total|"
            "generation_tokens_total|requests_running|kv_|prefix_cache|preemptions)'")
        _, text = call("GET", srv.url + "/metrics")
        for line in text.splitlines():
            if line.startswith(("tpinfer_requests_total", "tpinfer_generation_tokens_total",
                                "tpinfer_requests_running", "tpinfer_kv_", "tpinfer_prefix_cache",
                                "tpinfer_preemptions")):
                say("  " + line)
        for name in ("tpinfer_kv_blocks_total", "tpinfer_kv_blocks_used", "tpinfer_kv_blocks_free",
                     "tpinfer_kv_blocks_cached", "tpinfer_prefix_cache_queries_tokens_total",
                     "tpinfer_prefix_cache_hits_tokens_total", "tpinfer_preemptions_total"):
            check(metric(srv.url, name) is not None, f"/metrics has no {name}")
        check_sigterm_rank0(srv)
    except Failure:
        say(f"--- server log (tail)\n{srv.tail()}")
        raise
    finally:
        srv.kill()
    check_slow_server()
    say(f"\nPASS: every server check ({time.time() - t_start:.0f} s, loaded machine)")


if __name__ == "__main__":
    # timeout(1) or ctest stops us with SIGTERM: leave through the finally blocks that kill the
    # servers (each runs in its own session, so nothing else would).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("FAIL: stopped by SIGTERM"))
    try:
        main()
    except Failure as e:
        print(f"FAIL: {e}", flush=True)
        sys.exit(1)
