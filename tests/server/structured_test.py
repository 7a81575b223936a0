#!/usr/bin/env python3
"""End-to-end test of structured output and tool calling (issue 17, sections 3 and 4).

Run by check_structured.sh inside a virtual environment with `openai` and `jsonschema`. Starts
`tpinfer --serve` under scripts/mpirun.sh -np 2 (tp 2) on a tiny Qwen3 shape with random weights
(--dummy-weights) and the real Qwen3 tokenizer and chat template: whatever the model samples, the
grammar must make the output valid. Checks, in order:
  response_format json_schema: 50 samples at temperature 1, every one finishes with "stop",
    parses and validates with `jsonschema`; streamed too;
  response_format json_object on both endpoints: a JSON object;
  a schema feature outside the supported set: 400 naming the field and the keyword;
  tools with a named tool_choice (the openai client): every call's arguments validate against
    the function's parameters, finish_reason "tool_calls"; streamed as delta.tool_calls;
  tool_choice "required" with two tools: each call validates against its own function;
  tool_choice "auto" / "none" answer 200; the assistant's tool call and the tool's result sent
    back in the next request render and answer 200.
Usage: structured_test.py TPINFER WORK_DIR
"""
import concurrent.futures
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_process import ServeProcess, ServerFailed  # noqa: E402

import jsonschema
from openai import OpenAI, BadRequestError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN, WORK = sys.argv[1], sys.argv[2]
MPIRUN = os.path.join(ROOT, "scripts", "mpirun.sh")
MODEL = os.path.join(ROOT, "tests", "server", "tiny-qwen3-152k")
TOKENIZER = os.path.join(ROOT, "configs", "tokenizers", "qwen3")
HEALTH_WAIT_S = 240
N_SAMPLES = 50

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]},
                 "minItems": 1, "maxItems": 3},
        "member": {"type": "boolean"},
        "score": {"type": ["number", "null"]},
        "address": {"$ref": "#/$defs/address"},
    },
    "required": ["name", "age", "tags", "address"],
    "additionalProperties": False,
    "$defs": {"address": {"type": "object",
                          "properties": {"city": {"type": "string", "maxLength": 10},
                                         "zip": {"type": "string", "minLength": 2,
                                                 "maxLength": 5}},
                          "required": ["city"], "additionalProperties": False}},
}

WEATHER = {"type": "object",
           "properties": {"city": {"type": "string", "maxLength": 16},
                          "unit": {"enum": ["celsius", "fahrenheit"]},
                          "days": {"type": "integer"}},
           "required": ["city", "unit"], "additionalProperties": False}
CLOCK = {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 8}},
         "required": ["zone"], "additionalProperties": False}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                      "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "description": "Time in a zone",
                                      "parameters": CLOCK}},
]
PARAMS = {"get_weather": WEATHER, "get_time": CLOCK}
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def say(*args):
    print(*args, flush=True)


class Server(ServeProcess):
    def __init__(self):
        cmd = [MPIRUN, "-np", "2", BIN, "--model", MODEL, "--dummy-weights", "--tokenizer",
               TOKENIZER, "--tp", "2", "--batch-size", "16", "--max-seq", "2048"]
        say("$ " + " ".join(cmd))
        try:
            super().__init__("structured", cmd, os.path.join(WORK, "structured-server.log"),
                             HEALTH_WAIT_S)
        except ServerFailed as e:
            raise Failure(str(e))


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def check_json_schema(client, model):
    say(f"\n# response_format json_schema: {N_SAMPLES} samples at temperature 1")

    def one(i):
        r = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Describe a person as JSON."}],
            temperature=1.0, seed=1000 + i, max_tokens=600,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "person", "schema": SCHEMA}})
        c = r.choices[0]
        check(c.finish_reason == "stop",
              f"sample {i}: finish_reason {c.finish_reason!r}: {c.message.content!r}")
        doc = json.loads(c.message.content)
        jsonschema.validate(doc, SCHEMA)
        return c.message.content, r.usage.completion_tokens

    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(N_SAMPLES)))
    tokens = sum(n for _, n in results)
    say(f"  {N_SAMPLES}/{N_SAMPLES} parse and validate ({tokens} tokens, "
        f"{time.time() - t0:.1f} s); e.g. {results[0][0][:160]}")
    check(len({t for t, _ in results}) > N_SAMPLES // 2, "the samples should differ")

    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "JSON please"}], temperature=1.0,
        seed=7, max_tokens=600, stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}})
    text, finish = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    check(finish == "stop", f"stream finish_reason {finish!r}")
    jsonschema.validate(json.loads(text), SCHEMA)
    say("  streamed: validates")


def check_json_object(client, model, url):
    say("\n# response_format json_object, both endpoints")

    def one_object(i):
        r = client.chat.completions.create(model=model, messages=MESSAGES, temperature=1.0,
                                           seed=i, max_tokens=200,
                                           response_format={"type": "json_object"})
        if r.choices[0].finish_reason == "stop":
            check(isinstance(json.loads(r.choices[0].message.content), dict), "not an object")
        else:  # free-form JSON may use every token: then it is a valid prefix, cut by length
            check(r.choices[0].finish_reason == "length", r.choices[0].finish_reason)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(one_object, range(3)))
    status, body = post(url + "/v1/completions",
                        {"prompt": "JSON:", "max_tokens": 400, "temperature": 0.7, "seed": 3,
                         "response_format": {"type": "json_schema",
                                             "json_schema": {"name": "w", "schema": WEATHER}}})
    check(status == 200, body)
    jsonschema.validate(json.loads(body["choices"][0]["text"]), WEATHER)
    say("  chat json_object and completions json_schema: valid")


def check_refusals(client, model):
    say("\n# refusals")
    try:
        client.chat.completions.create(
            model=model, messages=MESSAGES, max_tokens=5,
            response_format={"type": "json_schema", "json_schema": {
                "name": "x", "schema": {"type": "string", "format": "email"}}})
        raise Failure("a schema with 'format' was accepted")
    except BadRequestError as e:
        err = e.body
        check(err["param"] == "response_format.json_schema.schema", err)
        check("'format' is not supported" in err["message"], err)
        say(f"  400: {err['message']}")
    try:
        client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=5, tools=TOOLS,
                                       tool_choice={"type": "function",
                                                    "function": {"name": "nope"}})
        raise Failure("an unknown tool_choice was accepted")
    except BadRequestError as e:
        check(e.body["param"] == "tool_choice.function.name", e.body)
        say(f"  400: {e.body['message']}")


def check_calls(calls, allowed):
    check(calls, "no tool calls")
    for c in calls:
        check(c.type == "function", c)
        check(c.id.startswith("call_"), c.id)
        check(c.function.name in allowed, c.function.name)
        jsonschema.validate(json.loads(c.function.arguments), PARAMS[c.function.name])


def check_tools(client, model):
    say("\n# tools: named tool_choice, 10 samples at temperature 1 (the openai client)")
    named = {"type": "function", "function": {"name": "get_weather"}}

    def one_named(i):
        r = client.chat.completions.create(model=model, messages=MESSAGES, tools=TOOLS,
                                           tool_choice=named, temperature=1.0, seed=i,
                                           max_tokens=300)
        c = r.choices[0]
        check(c.finish_reason == "tool_calls", f"finish_reason {c.finish_reason!r}: {c.message}")
        check(c.message.content is None, c.message.content)
        check_calls(c.message.tool_calls, {"get_weather"})
        check(len(c.message.tool_calls) == 1, c.message.tool_calls)
        return c

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        c = list(pool.map(one_named, range(10)))[0]
    say(f"  10/10 validate; e.g. {c.message.tool_calls[0].function.arguments}")

    stream = client.chat.completions.create(model=model, messages=MESSAGES, tools=TOOLS,
                                            tool_choice=named, temperature=1.0, seed=99,
                                            max_tokens=300, stream=True)
    args, name, finish = "", None, None
    for chunk in stream:
        if not chunk.choices:
            continue
        d = chunk.choices[0].delta
        for tc in d.tool_calls or []:
            name = tc.function.name or name
            args += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    check(name == "get_weather" and finish == "tool_calls", (name, finish))
    jsonschema.validate(json.loads(args), WEATHER)
    say("  streamed delta.tool_calls: validates")

    say("\n# tools: tool_choice required, two tools")
    seen = set()

    def one_required(i):
        # One call (parallel_tool_calls false): the output's length is bounded by the schema
        # (maxLength, bounded whitespace), so max_tokens cannot cut it.
        r = client.chat.completions.create(model=model, messages=MESSAGES, tools=TOOLS,
                                           tool_choice="required", temperature=1.0,
                                           seed=50 + i, max_tokens=700,
                                           parallel_tool_calls=False)
        c = r.choices[0]
        check(c.finish_reason == "tool_calls", f"finish_reason {c.finish_reason!r}: {c.message}")
        check_calls(c.message.tool_calls, set(PARAMS))
        check(len(c.message.tool_calls) == 1, "parallel_tool_calls false: one call")
        return [t.function.name for t in c.message.tool_calls]

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        for names in pool.map(one_required, range(6)):
            seen.update(names)
    # Parallel calls: as many as the model writes; each one validates when the array ends.
    r = client.chat.completions.create(model=model, messages=MESSAGES, tools=TOOLS,
                                       tool_choice="required", temperature=1.0, seed=3,
                                       max_tokens=1500)
    c = r.choices[0]
    if c.finish_reason == "tool_calls":
        check_calls(c.message.tool_calls, set(PARAMS))
        say(f"  parallel: {len(c.message.tool_calls)} call(s), all validate")
    else:
        check(c.finish_reason == "length", c.finish_reason)
    say(f"  6/6 validate (functions called: {sorted(seen)})")

    say("\n# tools: auto and none, then the call and its result sent back")
    for choice in ("auto", "none"):
        r = client.chat.completions.create(model=model, messages=MESSAGES, tools=TOOLS,
                                           tool_choice=choice, temperature=1.0, seed=5,
                                           max_tokens=20)
        check(r.choices[0].finish_reason in ("stop", "length", "tool_calls"), r)
    r = client.chat.completions.create(model=model, messages=MESSAGES, tools=TOOLS,
                                       tool_choice=named, temperature=0, max_tokens=300)
    call = r.choices[0].message.tool_calls[0]
    follow = MESSAGES + [
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": call.id, "type": "function",
                         "function": {"name": call.function.name,
                                      "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
    ]
    r = client.chat.completions.create(model=model, messages=follow, tools=TOOLS, max_tokens=8,
                                       temperature=0)
    check(r.choices[0].finish_reason in ("stop", "length", "tool_calls"), r)
    check(r.usage.prompt_tokens > 100, f"prompt of {r.usage.prompt_tokens} tokens: tools lost?")
    say(f"  round trip: 200, prompt {r.usage.prompt_tokens} tokens")


def main():
    os.makedirs(WORK, exist_ok=True)
    srv = Server()
    try:
        client = OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=600)
        model = client.models.list().data[0].id
        check_json_schema(client, model)
        check_json_object(client, model, srv.url)
        check_refusals(client, model)
        check_tools(client, model)
    except Exception:
        say("server log tail:\n" + srv.tail())
        raise
    finally:
        srv.stop()
    say("\nstructured output and tools: all checks passed")


if __name__ == "__main__":
    # SIGTERM (ctest's timeout) ends the driver through its finally blocks: the server goes too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except (Failure, jsonschema.ValidationError) as e:
        print(f"FAIL: {e}", flush=True)
        sys.exit(1)
