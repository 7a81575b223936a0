#!/usr/bin/env python3
"""lm-evaluation-harness against `tpinfer --serve` (issue 17): lm_eval's `local-completions` model
(no torch) on the small local tasks of tests/server/lm_eval_tasks, compared with the golden of
lm_eval's own `hf` model (scripts/gen_lm_eval_golden.py): equal metrics, equal generated texts,
every loglikelihood within 2e-3. Twice:
  - token ids: lm_eval tokenizes through the server (/tokenizer_info, /tokenize, /detokenize: the
    remote tokenizer it picks by itself) and sends prompts as lists of token ids, 4 per request;
  - text: prompts sent as text (tokenized_requests=False). lm_eval counts the context's tokens
    without special tokens, so this server runs with a copy of the tokenizer that adds no BOS
    (docs/SERVER.md: with a BOS-adding tokenizer, use token-id prompts, lm_eval's default).
Also: a 294-token prompt scored over several steps against transformers' log_softmax, and the
same seeded request at temperature 1 gives the same text on both dp replicas.
The server: scripts/mpirun.sh -np 4 (dp 2 x tp 2). Prints the comparison table.

Usage: check_lm_eval.py TPINFER MODEL_DIR(stories260K-tp2) WORK_DIR
"""
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_process import ServeProcess, ServerFailed  # noqa: E402

BIN, MODEL, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TASKS_DIR = os.path.join(HERE, "lm_eval_tasks")
GOLDEN = os.path.join(ROOT, "tests", "data", "goldens", "lm_eval_stories260K.json")
HF_DIR = os.path.join(ROOT, "configs", "models", "stories260K")
MPIRUN = os.path.join(ROOT, "scripts", "mpirun.sh")
TASKS = ["tpinfer_mc", "tpinfer_gen"]
LL_TOL = 2e-3
HEALTH_WAIT_S = 180


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


class Server(ServeProcess):
    def __init__(self, name, extra):
        cmd = [MPIRUN, "-np", "4", BIN, "--model", MODEL, "--tp", "2", "--batch-size", "4"] + extra
        try:
            super().__init__(name, cmd, os.path.join(WORK, f"{name}.log"), HEALTH_WAIT_S)
        except ServerFailed as e:
            fail(str(e))

    def stop(self):
        super().stop(60)


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def run_lm_eval(server, tokenized):
    import lm_eval
    from lm_eval.tasks import TaskManager

    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from gen_lm_eval_golden import summarize

    with urllib.request.urlopen(server.url + "/v1/models", timeout=30) as r:
        model = json.loads(r.read())["data"][0]["id"]
    args = (f"base_url={server.url}/v1/completions,model={model},tokenizer_backend=remote,"
            f"tokenized_requests={tokenized},num_concurrent=1,max_retries=2,timeout=300")
    results = lm_eval.simple_evaluate(
        model="local-completions", model_args=args, tasks=TASKS,
        task_manager=TaskManager(include_path=TASKS_DIR), batch_size=4, log_samples=True)
    return summarize(results)


def compare(name, golden, got, table):
    ok = True
    for task in TASKS:
        g_m, t_m = golden["metrics"][task], got["metrics"][task]
        for metric, g_v in g_m.items():
            if metric == "sample_len":
                continue
            t_v = t_m.get(metric)
            diff = "-"
            if task == "tpinfer_mc":
                d = max(abs(a - b)
                        for gs, ts in zip(golden["samples"][task], got["samples"][task])
                        for a, b in zip(gs["loglikelihoods"], ts["loglikelihoods"]))
                diff = f"{d:.2e}"
                if d > LL_TOL:
                    ok = False
                    print(f"{name}: {task}: max |loglikelihood diff| {d:.3e} > {LL_TOL}")
            else:
                for gs, ts in zip(golden["samples"][task], got["samples"][task]):
                    # hf decodes the continuation's ids alone, and a SentencePiece decode drops
                    # the first token's leading space ("Lily"); the server's text continues the
                    # prompt as OpenAI's does (" Lily"). One leading space is that difference.
                    text = ts["text"][1:] if ts["text"].startswith(" ") else ts["text"]
                    if gs["text"] != text:
                        ok = False
                        print(f"{name}: {task} doc {gs['doc_id']}: hf {gs['text']!r}, "
                              f"tpinfer {ts['text']!r}")
            if t_v is None or abs(t_v - g_v) > 1e-9:
                ok = False
                print(f"{name}: {task} {metric}: hf {g_v}, tpinfer {t_v}")
            table.append((name, task, metric, g_v, t_v, diff))
    return ok


def seeded_requests_agree(server):
    body = {"prompt": "Once upon a time", "max_tokens": 24, "temperature": 1.0, "seed": 1234,
            "presence_penalty": 0.3, "frequency_penalty": 0.2, "repetition_penalty": 1.1,
            "min_p": 0.05}
    texts = set()
    for _ in range(4):  # dp 2: the queue hands them to both replicas
        texts.add(post(server.url + "/v1/completions", body)["choices"][0]["text"])
    if len(texts) != 1:
        fail(f"the same seeded request gave different texts: {texts}")
    print("seed 1234 at temperature 1 with penalties and min_p: one text over 4 requests (dp 2)")


def long_prompt_scored(server, golden):
    """A 294-token prompt scored with echo + max_tokens 0: more rows than one step holds, so the
    scheduler scores it in chunks; every logprob against transformers' log_softmax."""
    g = golden["long_prompt"]
    out = post(server.url + "/v1/completions",
               {"prompt": g["ids"], "max_tokens": 0, "echo": True, "logprobs": 0})
    lp = out["choices"][0]["logprobs"]["token_logprobs"]
    if lp[0] is not None or len(lp) != len(g["ids"]):
        fail(f"long prompt: {len(lp)} logprobs for {len(g['ids'])} ids, first {lp[0]}")
    d = max(abs(a - b) for a, b in zip(lp[1:], g["logprobs"]))
    if d > LL_TOL:
        fail(f"long prompt: max |logprob diff| {d:.3e} > {LL_TOL}")
    print(f"long prompt ({len(g['ids'])} tokens, scored in chunks): max |logprob diff| {d:.2e}")


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1",
                      HF_HOME=os.path.join(WORK, "hf-home"), TOKENIZERS_PARALLELISM="false")
    os.chdir(TASKS_DIR)  # the tasks' data_files are relative
    with open(GOLDEN) as f:
        golden = json.load(f)
    # The same tokenizer without its BOS post-processor, for text prompts.
    nobos = os.path.join(WORK, "tokenizer-nobos")
    os.makedirs(nobos)
    with open(os.path.join(HF_DIR, "tokenizer.json")) as f:
        tok = json.load(f)
    tok["post_processor"] = None
    with open(os.path.join(nobos, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    with open(os.path.join(HF_DIR, "tokenizer_config.json")) as f:
        tcfg = json.load(f)
    tcfg["add_bos_token"] = False
    with open(os.path.join(nobos, "tokenizer_config.json"), "w") as f:
        json.dump(tcfg, f)

    table = []
    ok = True
    t0 = time.time()
    server = Server("ids", [])
    try:
        seeded_requests_agree(server)
        long_prompt_scored(server, golden)
        ok &= compare("token ids", golden, run_lm_eval(server, True), table)
    finally:
        server.stop()
    server = Server("text", ["--tokenizer", nobos])
    try:
        ok &= compare("text", golden, run_lm_eval(server, False), table)
    finally:
        server.stop()

    print()
    print("| prompts | task | metric | hf | tpinfer | max abs loglikelihood diff |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, task, metric, g, t, d in table:
        print(f"| {name} | {task} | {metric} | {g:.4f} | {t:.4f} | {d} |")
    print(f"({time.time() - t0:.0f} s)")
    if not ok:
        fail("lm_eval on tpinfer differs from lm_eval's hf model (see above)")
    print("PASS")


if __name__ == "__main__":
    main()
