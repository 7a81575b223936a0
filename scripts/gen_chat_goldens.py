#!/usr/bin/env python3
"""Golden renders of real chat templates for the C++ Jinja renderer (tests/tokenizer/test_jinja.cpp).

For every template in tests/data/chat/templates (copies of /work/shared/chat-templates, see the
SOURCES.md there) and the templates of the bundled tokenizers (configs/tokenizers/{qwen3,llama3}
and the chat fixtures of tests/data/tokenizer/chat_fixtures; configs/tokenizers/mistral has none),
renders a fixed set of conversations with transformers' render_jinja_template, the function
apply_chat_template(..., tokenize=False) calls, and writes tests/data/chat/goldens.json:
the inputs (messages, tools, add_generation_prompt, keyword arguments, special tokens) and the
text, or the error when the template raised (error_type says which).

Conversation x add_generation_prompt on/off x enable_thinking on/off where the template reads it;
tools only for templates that read `tools`. strftime_now's clock is fixed (NOW below) so the
goldens do not depend on the day they were made.

    /work/refenv/bin/python scripts/gen_chat_goldens.py
"""
import calendar
import datetime as _dt
import json
import os

import jinja2
import transformers
from transformers.utils import chat_template_utils as ctu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "tests", "data", "chat", "templates")
OUT = os.path.join(ROOT, "tests", "data", "chat", "goldens.json")

NOW = _dt.datetime(2025, 3, 14, 10, 30, 0)


class FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return NOW


ctu.datetime = FixedDatetime  # strftime_now reads the module's datetime

# Special tokens each published template is rendered with (its checkpoint's special_tokens_map).
LLAMA3 = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
QWEN = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
MISTRAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
SPECIAL = {
    "HuggingFaceTB-SmolLM3-3B": {"eos_token": "<|im_end|>", "pad_token": "<|im_end|>"},
    "Mistral-Small-3.2-24B-Instruct-2506": MISTRAL,
    "Qwen-QwQ-32B": QWEN,
    "Qwen-Qwen2.5-7B-Instruct": QWEN,
    "Qwen-Qwen3-0.6B": QWEN,
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": {
        "bos_token": "<\uff5cbegin\u2581of\u2581sentence\uff5c>",
        "eos_token": "<\uff5cend\u2581of\u2581sentence\uff5c>",
        "pad_token": "<\uff5cend\u2581of\u2581sentence\uff5c>"},
    "meta-llama-Llama-3.1-8B-Instruct": LLAMA3,
    "meta-llama-Llama-3.2-3B-Instruct": LLAMA3,
    "meta-llama-Llama-3.3-70B-Instruct": LLAMA3,
    "microsoft-Phi-3.5-mini-instruct": {"bos_token": "<s>", "eos_token": "<|endoftext|>",
                                        "unk_token": "<unk>", "pad_token": "<|endoftext|>"},
    "mistralai-Mistral-Nemo-Instruct-2407": MISTRAL,
}

# Bundled tokenizer configs: (name, config path); special tokens come from the config itself.
BUNDLED = [
    ("bundled-qwen3", "configs/tokenizers/qwen3/tokenizer_config.json"),
    ("bundled-llama3", "configs/tokenizers/llama3/tokenizer_config.json"),
    ("fixture-llama3_instruct", "tests/data/tokenizer/chat_fixtures/llama3_instruct/tokenizer_config.json"),
    ("fixture-mistral_instruct_v01",
     "tests/data/tokenizer/chat_fixtures/mistral_instruct_v01/tokenizer_config.json"),
]
SPECIAL_KEYS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                "mask_token"]

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}]

TOOL_CALL = {"id": "call0A1b2", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}

CONVERSATIONS = {
    "user": [{"role": "user", "content": "Hello!"}],
    "system_multi": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ],
    "multi_no_system": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ],
    "reasoning": [
        {"role": "system", "content": "Think first."},
        {"role": "user", "content": "Is 17 prime?"},
        {"role": "assistant", "reasoning_content": "17 has no divisors but 1 and 17.",
         "content": "Yes, 17 is prime."},
        {"role": "user", "content": "And 21?"},
    ],
    "assistant_last": [
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "content": "  hi there \n"},
    ],
    "unicode_ws": [
        {"role": "system", "content": "  Réponds en français.\n"},
        {"role": "user", "content": " 你好 👋🏽 \"quoted\" 'single' \\ back\n\tslash "},
    ],
    "tools": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
        {"role": "tool", "tool_call_id": "call0A1b2", "name": "get_weather",
         "content": "{\"temperature\": 22, \"unit\": \"celsius\"}"},
    ],
    # templates that require alternating roles raise
    "not_alternating": [
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
    ],
    # two tool calls in one turn: the Llama 3.x templates raise (single tool-calls only)
    "parallel_tools": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "", "tool_calls": [
            TOOL_CALL, {"id": "call1C3d4", "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]},
        {"role": "tool", "tool_call_id": "call0A1b2", "name": "get_weather", "content": "22"},
        {"role": "tool", "tool_call_id": "call1C3d4", "name": "get_weather", "content": "25"},
    ],
}


# Small templates for what the published ones above do not exercise, rendered by the same
# environment (transformers' compiled jinja2) with SNIPPET_VARS.
SNIPPET_VARS = {"items": [3, 1, 2], "names": ["b", "A", "c", "a"], "s": "  Hello, World  ",
                "d": {"b": 1, "a": [1, 2.5, None, True], "c": {"x": "y\"z"}},
                "users": [{"name": "ann", "age": 30, "admin": True},
                          {"name": "bob", "age": 25, "admin": False},
                          {"name": "cid", "age": 35}],
                "n": -7, "f": 2.675, "empty": [], "text": "a,b,,c", "none": None}
SNIPPETS = [
    "{% for x in items %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}:{{ x }}"
    "{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %}|{% endfor %}",
    "{% for x in items %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}; {% endfor %}",
    "{% for x in empty %}no{% else %}empty{% endfor %}",
    "{% for u in users if u.admin is defined %}{{ u.name }}{{ loop.length }} {% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
    "{% for x in items %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 2 %}{% break %}"
    "{% endif %}{{ x }}{% endfor %}",
    "{% set ns = namespace(total=0, seen=[]) %}{% for x in items %}{% set ns.total = ns.total + x %}"
    "{% endfor %}{{ ns.total }}",
    "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
    "{{ greet('ann') }} {{ greet('bob', punct='?') }}",
    "{% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}inside{% endcall %}",
    "{% macro row(x) %}<{{ caller(x * 2) }}>{% endmacro %}{% call(y) row(4) %}y={{ y }}{% endcall %}",
    "{% set captured %}  block {{ 1 + 2 }}{% endset %}[{{ captured }}]",
    "A  \n  {%- if true -%}  \n B  \n  {%- endif -%}  \n C",
    "line1\n    {% if true %}\n    indented\n    {% endif %}\nend\n",
    "x {{- ' y ' -}} z {#- comment -#} w\n  {#+ kept #}v",
    "{{ none is none }} {{ undefined_var is defined }} {{ s is string }} {{ d is mapping }} "
    "{{ items is iterable }} {{ 3 is number }} {{ items is sequence }} {{ true is true }} "
    "{{ false is false }} {{ 2 in items }} {{ 5 not in items }} {{ s is not none }} "
    "{{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ 'a' is lower }}",
    "{{ s | trim }}|{{ s | length }}|{{ items | count }}|{{ names | join(',') }}|"
    "{{ names | first }}{{ names | last }}|{{ s | lower }}{{ s | upper }}|{{ 'hello world' | capitalize }}|"
    "{{ 'hello big-world' | title }}|{{ s | replace('l', 'L') }}",
    "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ 'é\u00e9\t<>&' | tojson }}|{{ users | tojson(indent=4) }}",
    "{{ users | selectattr('admin') | map(attribute='name') | list }} "
    "{{ users | rejectattr('admin') | map(attribute='name') | join('+') }} "
    "{{ users | selectattr('age', 'gt', 28) | map(attribute='name') | list }} "
    "{{ users | selectattr('admin', 'defined') | list | length }}",
    "{{ names | sort }} {{ names | sort(reverse=true) }} {{ names | unique | list }} "
    "{{ items | reverse | list }} {{ 'abc' | reverse }} {{ users | sort(attribute='age') | map(attribute='name') | join }}",
    "{{ d | dictsort }} {{ d | items | list }} {{ undefined_var | default('dflt') }} "
    "{{ '' | default('e', true) }} {{ none | default('x') }}",
    "{{ 42 | string }}{{ '12' | int + 1 }} {{ '2.5' | float * 2 }} {{ n | abs }} {{ f | round(2) }} "
    "{{ 2.5 | round }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} "
    "{{ 1 + 2.0 }} {{ 'a' ~ 1 ~ none }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ 1e20 }} {{ 0.1 + 0.2 }} {{ 1.5e-7 }}",
    "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'xxhixx'.strip('x') }}|{{ text.split(',') }}|"
    "{{ text.split(',', 1) }}|{{ text.rsplit(',', 1) }}|{{ ' a  b '.split() }}|"
    "{{ s.startswith('  He') }}{{ s.endswith(('x', '  ')) }}|{{ s.replace('o', '0', 1) }}|"
    "{{ 'ab cd'.title() }}|{{ 'abcabc'.find('c') }}{{ 'abcabc'.count('b') }}|{{ '-'.join(names) }}|"
    "{{ 'MiXed'.upper() }}{{ 'MiXed'.lower() }}",
    "{{ d.get('b') }} {{ d.get('zz', 'def') }} {{ d.get('zz') }} {{ d.keys() | list }} "
    "{{ d.values() | list | length }} {{ d['c']['x'] }} {{ d.c.x }} {{ users[1].name }} {{ users[-1]['age'] }}",
    "{{ items[::-1] }} {{ items[1:] }} {{ items[:2] }} {{ 'hello'[1:3] }} {{ 'hello'[::-1] }} "
    "{{ names[-2:] }} {{ items[5:] }}",
    "{{ 'yes' if items else 'no' }} {{ 'y' if empty else 'n' }} {{ 1 < 2 and 2 < 3 }} "
    "{{ none or 'fallback' }} {{ 0 and 1 }} {{ not empty }} {{ items == [3, 1, 2] }} {{ 'a' < 'b' }} "
    "{{ (1, 'x') }} {{ [1, 'a', none, true, 1.5, {'k': 'v'}] }} {{ \"it's\" }} {{ {'q': \"it's\"} }} {{ ['x\\ty'] }}",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set lst = [] %}{{ lst | length }} "
    "{{ range(3) | list }} {{ range(1, 6, 2) | list }} {{ dict(a=1, b='x') }}",
    "{% if messages[0]['role'] != 'system' %}{{ raise_exception('System first: got ' + messages[0]['role']) }}{% endif %}ok",
    "{{ strftime_now('%Y-%m-%d %d %b %Y %H:%M') }}",
    "{%- for m in messages %}{{ m.role | upper }}: {{ m.content | trim }}{{ '\n' if not loop.last }}{% endfor -%}",
    "{{ users | map(attribute='name') | map('upper') | join(', ') }} {{ names | select('lower') | list }} "
    "{{ [1, 2, 3, 4] | batch(3) | list }} {{ items | sum }} {{ items | min }} {{ items | max }}",
    "{% generation %}gen {{ 1 }}{% endgeneration %}",
    # scoping: a set in a loop body lasts one iteration; macros see later top-level sets
    "{% for x in items %}{% if loop.first %}{% set y = 5 %}{% endif %}[{{ y }}]{% endfor %}{{ y }}",
    "{% set y = 1 %}{% for x in items %}{{ y }}{% set y = y + 10 %}{{ y }};{% endfor %}{{ y }}",
    "{% set y = 1 %}{% macro m() %}{{ y }}{% set y = 3 %}{{ y }}{% endmacro %}{{ m() }}{{ y }}"
    "{% macro m2() %}{{ z }}{% endmacro %}{% set z = 7 %}{{ m2() }}",
    "{{ '%s-%d|%5.2f|%r|%%' % ('a', 3, 2.5, 'q') }} {{ 'n=%s' % 4 }}",
    # errors: an undefined attribute chain, a type error
    "{{ d | tojson(separators=(',', ':')) }} {{ d | tojson(sort_keys=true) }} "
    "{{ d | tojson(indent=1, separators=(', ', ' = ')) }}",
    "{{ d.zz.y }}",
    "{{ 'a' + 1 }}",
]
SNIPPET_MESSAGES = [{"role": "user", "content": "  hi  "}, {"role": "assistant", "content": "yo"}]


def templates():
    out = []
    for fn in sorted(os.listdir(TEMPLATES)):
        if fn.endswith(".jinja"):
            name = fn[:-len(".jinja")]
            text = open(os.path.join(TEMPLATES, fn), encoding="utf-8").read()
            out.append((name, "tests/data/chat/templates/" + fn, None, text, SPECIAL[name]))
    for name, cfg_path in BUNDLED:
        cfg = json.load(open(os.path.join(ROOT, cfg_path), encoding="utf-8"))
        special = {}
        for k in SPECIAL_KEYS:
            v = cfg.get(k)
            if isinstance(v, dict):
                v = v.get("content")
            if isinstance(v, str) and v:
                special[k] = v
        out.append((name, cfg_path, "chat_template", cfg["chat_template"], special))
    return out


def main():
    cases = []
    summary = {}
    for name, path, key, text, special in templates():
        reads_tools = "tools" in text
        reads_thinking = "enable_thinking" in text
        for conv, msgs in CONVERSATIONS.items():
            use_tools = conv in ("tools", "parallel_tools")
            if use_tools and not reads_tools:
                continue
            for gen in (True, False):
                for thinking in ((True, False) if reads_thinking else (None,)):
                    kwargs = {}
                    if thinking is not None:
                        kwargs["enable_thinking"] = thinking
                    entry = {"template": name, "file": path, "key": key, "conversation": conv,
                             "messages": msgs, "tools": TOOLS if use_tools else None,
                             "add_generation_prompt": gen, "kwargs": kwargs,
                             "special_tokens": special}
                    try:
                        rendered, _ = ctu.render_jinja_template(
                            conversations=[json.loads(json.dumps(msgs))],
                            tools=json.loads(json.dumps(TOOLS)) if use_tools else None,
                            chat_template=text, add_generation_prompt=gen,
                            **special, **kwargs)
                        entry["text"] = rendered[0]
                    except Exception as e:  # the template raised
                        entry["error"] = str(e)
                        entry["error_type"] = type(e).__name__
                    cases.append(entry)
                    s = summary.setdefault(name, [0, 0])
                    s[0] += 1
                    s[1] += "error" in entry
    snippets = []
    for text in SNIPPETS:
        entry = {"template": text}
        try:
            entry["text"] = ctu._compile_jinja_template(text).render(
                messages=SNIPPET_MESSAGES, **SNIPPET_VARS)
        except Exception as e:
            entry["error"] = str(e)
            entry["error_type"] = type(e).__name__
        snippets.append(entry)
    print("%d snippets (%d errors)" % (len(snippets), sum("error" in e for e in snippets)))
    out = {
        "made_with": "transformers %s, jinja2 %s" % (transformers.__version__, jinja2.__version__),
        "note": "text = transformers.utils.chat_template_utils.render_jinja_template(conversations="
                "[messages], tools, chat_template, add_generation_prompt, **special_tokens, "
                "**kwargs) (what apply_chat_template(tokenize=False) renders); strftime_now's "
                "clock fixed at now_utc; error = the template raised",
        "now_utc": calendar.timegm(NOW.timetuple()),
        "cases": cases,
        "snippet_vars": SNIPPET_VARS,
        "snippet_messages": SNIPPET_MESSAGES,
        "snippets": snippets,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, indent=1)
        f.write("\n")
    for name, (n, errs) in summary.items():
        print("%-45s %3d cases, %d errors" % (name, n, errs))
    print("wrote %s: %d cases" % (OUT, len(cases)))


if __name__ == "__main__":
    main()
