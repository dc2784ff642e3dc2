#!/usr/bin/env python3
"""Reference renderings of chat templates by Jinja2, configured as Hugging Face transformers
configures it for `apply_chat_template` (sandbox, trim_blocks, lstrip_blocks, loopcontrols,
raise_exception, strftime_now, tojson = json.dumps(ensure_ascii=False, ...)) and rendered with
the variables it passes (`tools` and `documents` are None unless given).

usage: make_chat_template_cases.py OUT.json      (needs only jinja2)

The real templates of popular model families are read from chat-templates/ beside this script
(verbatim copies of the ones in llama.cpp's models/templates). `strftime_now` formats the fixed
time NOW (UTC, as a naive datetime), so the renderings do not depend on the day they were made.

Each case: name, either template (the source) or template_file (a file in chat-templates/),
messages, add_generation_prompt, bos_token, eos_token, extra (more template variables or null)
and one of `rendered` (the text), `error` (the message the template passed to
raise_exception) or `fails` (the Python exception of a render that fails otherwise, e.g.
`'str' + None`).
"""
import datetime
import json
import os
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers.utils.chat_template_utils: tojson
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


# 2025-03-05 14:07:09 UTC: a day of the month below 10 shows zero padding.
NOW = 1741183629


def strftime_now(format):
    # transformers: datetime.now().strftime(format), at a fixed time here.
    now = datetime.datetime.fromtimestamp(NOW, datetime.timezone.utc).replace(tzinfo=None)
    return now.strftime(format)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


CONVERSATION = [
    {"role": "system", "content": "  You are terse.\n"},
    {"role": "user", "content": "Hello, World! "},
    {"role": "assistant", "content": "Hi."},
    {"role": "user", "content": "naïve café: «ünïcödé» \"quoted\" 'single'"},
]

# Gemma's instruction template from its Hugging Face tokenizer_config.json (gemma-7b-it).
GEMMA_HF = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
    "supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}"
    "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

# Block tags on their own, indented lines: trim_blocks eats the newline after a tag,
# lstrip_blocks the indentation before it; the template's final newline is dropped.
WHITESPACE = """{% for message in messages %}
    {% if message.role == 'user' %}
        <{{ message.role }}>
        {{ message.content }}
    {% else %}
        [{{ message.role }}] {{ message.content }}
    {% endif %}
{% endfor %}
{# a comment #}
{% if add_generation_prompt %}
  >>
{% endif %}
"""

LOOP_CONTROLS = """{%- for message in messages -%}
{%- if message.role == 'system' %}{% continue %}{% endif -%}
{%- if loop.index > 3 %}{% break %}{% endif -%}
{{ loop.index }}/{{ loop.length }} {{ message.role }}{{ ', ' if not loop.last else '.' }}
{%- endfor %}"""

STRING_METHODS = """{%- for message in messages -%}
{{ message.content.strip() }}|{{ message.content.lstrip() }}|{{ message.content.rstrip() }}|
{{- message.content.upper() }}|{{ message.content.lower() }}|{{ message.content.title() }}|
{{- message.content.startswith('Hello') }}|{{ message.content.endswith(' ') }}|
{{- message.content.split() }}|{{ message.content.split(',') }}|
{{- message.content.replace('l', 'L') }}|{{ message.content.find('o') }}|
{{- message.content.count('l') }}|{{ '-'.join(message.content.split()) }}|
{{- 'o' in message.content }}|{{ message.content[:5] }}|{{ message.content | length }}
{% endfor -%}"""

DICT_AND_VALUES = """{%- for message in messages -%}
{%- for key, value in message.items() -%}{{ key }}={{ value | trim }};{%- endfor -%}
 name={{ message.get('name', 'anon') }} has_name={{ message.name is defined }}
{%- if message.tool_calls %} TOOLS{% endif %} [{{ message.nothing }}]
{% endfor -%}
{{ none }} {{ true }} {{ false }} {{ [1, 'a', none, true] }} {{ {'k': 'v', 'n': 2} }}
{{ 10 / 4 }} {{ 4 / 2 }} {{ 7 // 2 }} {{ 2 ** 10 }} {{ 1.5 }} {{ 'x' * 3 }} {{ undefined_name }}
{{ messages | length }} {{ messages[-1].role }} {{ messages[1:] | map(attribute='role') | join(',') }}
{{ (messages | selectattr('role', 'equalto', 'user') | list | length) }}"""

NAMESPACE_AND_SYSTEM = """{%- if messages[0]['role'] == 'system' -%}
{%- set system = messages[0]['content'] | trim -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set system = 'default system' -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- set ns = namespace(users=0, last='') -%}
{{ bos_token }}<<{{ system }}>>
{% for message in loop_messages -%}
{%- if message.role == 'user' %}{% set ns.users = ns.users + 1 %}{% endif -%}
{%- set ns.last = message.role -%}
{{ message.role | capitalize }}: {{ message.content | trim }}{{ eos_token if message.role == 'assistant' }}
{% endfor -%}
users={{ ns.users }} last={{ ns.last }}
{%- if not date_string is defined %}{% set date_string = 'unknown' %}{% endif %} date={{ date_string }}
{%- if add_generation_prompt %}
Assistant:{% endif %}"""

TOJSON = """{{ tools | tojson }}
{{ tools[0] | tojson(indent=2) }}
{{ tools[0].function | tojson(sort_keys=True, separators=(',', ':')) }}
{{ {'z': 1, 'a': [1.0, 2.5, none, true, 'é\\n"'], 'm': {}} | tojson(sort_keys=True) }}
{{ messages[1] | tojson }}"""

# OpenAI function schemas, keys in the order a caller writes them (not sorted): `tojson` must
# keep that order at every level, as Python dicts do.
TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather <for> a city & \"date\" — today",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["location"],
        },
    },
}, {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "filters": {
                    "type": "object",
                    "properties": {"site": {"type": "string"},
                                   "after": {"type": "string", "format": "date"}},
                },
                "limit": {"type": "number", "default": 2.5},
            },
            "required": ["query"],
        },
        "return": {"type": "array"},
    },
}]

# Python's str methods where minijinja-contrib's pycompat lacks them or departs from Python
# (empty strings, cased characters, Python's whitespace set with \x1c..\x1f, line boundaries).
MORE_STRING_METHODS = r"""{%- set s = messages[-1].content -%}
{{ 'ab1'.islower() }} {{ 'Ab1'.islower() }} {{ ''.islower() }} {{ 'AB1'.isupper() }} {{ '12'.isupper() }}
{{- ' ' }}{{ ''.isspace() }} {{ ''.isdigit() }} {{ ''.isalpha() }} {{ 'Abc Of'.istitle() }} {{ 'aBç'.swapcase() }}
{{ 'aXbXc'.count('X', 2) }} {{ 'abc'.count('') }} {{ ''.count('') }} {{ 'añc'.count('', -2, -1) }} {{ s.count('é') }}
{{ s.find('é') }} {{ s.rfind('é') }} {{ s.index('«') }} {{ s.rindex('ï', 0, 20) }} {{ 'abc'.find('', 9) }}
{{ '  a  b  c '.split(none, 1) }} {{ ' a b '.rsplit(none, 1) }} {{ 'a-b-c'.rsplit('-', 1) }} {{ 'a\x1cb'.split() }}
{{ 'a\rb\x0bc\x85d\u2028e\r\nf\n'.splitlines() }} {{ 'a\r\nb\n'.splitlines(true) }}
[{{ '\x1c hi\u3000\x1f'.strip() }}] [{{ '\x1c hi '.lstrip() }}] [{{ 'xxhixx'.rstrip('x') }}] [{{ 'hi'.strip(none) }}]
{{ 'ab'.center(5) }}|{{ 'abc'.center(6, '-') }}|{{ 'ab'.ljust(4, '.') }}|{{ 'ab'.rjust(4) }}|{{ '-5'.zfill(4) }}
{{- '|' }}{{ 'a=b=c'.partition('=')[2] }}|{{ 'a=b=c'.rpartition('=')[0] }}|{{ 'abc'.removeprefix('a') }}|{{ 'abc'.removesuffix('c') }}
{{ '/'.join('abc') }} {{ '-'.join({'k': 1, 'j': 2}) }} {{ ', '.join(messages | map(attribute='role')) }}"""

# Jinja2's filters and tests where minijinja's differ: str() of the input (Python repr of
# containers, None, True), join by attribute, replace with a count, indent's string width and
# keywords, title's word starts, round (ties to even, integers stay integers), length of
# undefined, `is sequence` of strings and dicts, `is iterable` of none, booleans as numbers.
JINJA2_FILTERS = r"""{%- set d = {'a': 1, 'b': [1.5, none, true], 'c': {'x': "it's"}} -%}
{{ d | string }} {{ none | string }} {{ [1, 'a'] | string | length }} {{ 1e20 | string }}
{{ [1, none, 1.0, [2], {'k': 'v'}] | join('/') }} {{ messages | join(', ', attribute='role') }} {{ undefined_name | join }}
{{ none | trim }} [{{ 12 | trim }}] [{{ '\x1c x ' | trim }}] [{{ 'xxhixx' | trim('x') }}]
{{ 'aaa' | replace('a', 'b', 2) }} {{ 'aaa' | replace('a', 'b') }} {{ d | replace("'", '"') }}
{{ 'a\n\nb\n' | indent(2) }}|{{ 'a\n\nb' | indent(2, true) }}|{{ 'a\n\nb' | indent(2, blank=true) }}|{{ 'a\nb' | indent('> ') }}|{{ 'a\nb' | indent(first=true) }}
{{ "it's a dog-cat (x) [y] {z} <w>" | title }} {{ "hELLO wORLD" | title }} {{ 'x' | center(5) }}|{{ 'hello, wörld_x y' | wordcount }}
{{ 3 | round }} {{ 2.5 | round }} {{ 3.5 | round }} {{ -0.5 | round }} {{ 2.675 | round(2) }} {{ 0.125 | round(2) }} {{ 2.5 | round(method='floor') }} {{ 2.1 | round(0, 'ceil') }} {{ 1250 | round(-2) }}
{{ undefined_name | length }} {{ d | length }} {{ 'héllo' | length }} {{ d.items() | list | length }} {{ messages | count }}
{{ 'a' is sequence }} {{ d is sequence }} {{ [1] is sequence }} {{ 1 is sequence }} {{ undefined_name is sequence }}
{{- ' ' }}{{ 'a' is iterable }} {{ d is iterable }} {{ none is iterable }} {{ 3 is iterable }} {{ undefined_name is iterable }}
{{- ' ' }}{{ true is number }} {{ true is integer }} {{ 1.5 is number }} {{ none is number }}"""

MISTRAL_ALTERNATION = """{%- for message in messages %}
{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
{%- endif %}
{%- if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}
{%- else %}{{ message['content'] + eos_token }}{% endif %}
{%- endfor %}"""


def synthetic_cases():
    no_system = CONVERSATION[1:]
    return [
        ("whitespace_control", WHITESPACE, CONVERSATION, True, None),
        ("whitespace_control_no_generation_prompt", WHITESPACE, CONVERSATION, False, None),
        ("loop_controls", LOOP_CONTROLS, CONVERSATION, True, None),
        ("python_string_methods", STRING_METHODS, CONVERSATION, True, None),
        ("dicts_values_and_undefined", DICT_AND_VALUES, CONVERSATION, True, None),
        ("namespace_slicing_defined", NAMESPACE_AND_SYSTEM, CONVERSATION, True, None),
        ("namespace_with_date_string", NAMESPACE_AND_SYSTEM, no_system, False,
         {"date_string": "26 Jul 2024"}),
        ("tojson", TOJSON, CONVERSATION, True, {"tools": TOOLS}),
        ("gemma_hf_template", GEMMA_HF, no_system, True, None),
        ("gemma_hf_template_rejects_system", GEMMA_HF, CONVERSATION, True, None),
        ("mistral_alternation_ok", MISTRAL_ALTERNATION, no_system, True, None),
        ("mistral_alternation_broken", MISTRAL_ALTERNATION, no_system[1:], True, None),
        ("more_python_string_methods", MORE_STRING_METHODS, CONVERSATION, True, None),
        ("jinja2_filters_and_tests", JINJA2_FILTERS, CONVERSATION, True, None),
        # Python raises where these have no answer.
        ("str_index_not_found_fails", "{{ 'Hello'.index('z') }}", CONVERSATION, True, None),
        ("str_join_of_none_fails", "{{ '/'.join(['a', none]) }}", CONVERSATION, True, None),
        ("length_of_none_fails", "{{ none | length }}", CONVERSATION, True, None),
        ("join_filter_of_none_fails", "{{ none | join(',') }}", CONVERSATION, True, None),
    ]


# ---------------------------------------------------------------------------------------------
# Conversations for the real templates
# ---------------------------------------------------------------------------------------------

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Réponds en français si "
          "on te parle français.\n"}
CHAT = [
    {"role": "user", "content": "  Hello! Who are you?"},
    {"role": "assistant", "content": "I'm an assistant — how can I help? 😊 "},
    {"role": "user", "content": "Explain «naïve» in 日本語, briefly.\n"},
]
WITH_SYSTEM = [SYSTEM] + CHAT
ONE_USER = [{"role": "user", "content": "Ça va?"}]
NOT_ALTERNATING = [CHAT[0], {"role": "user", "content": "Anyone there?"}]


def weather_call(call_id="call00001", arguments=None):
    if arguments is None:
        arguments = {"location": "Zürich", "unit": "celsius", "days": 3}
    return {"id": call_id, "type": "function",
            "function": {"name": "get_weather", "arguments": arguments}}


def search_call(call_id="call00002"):
    return {"id": call_id, "type": "function",
            "function": {"name": "search",
                         "arguments": {"query": "restaurants Zürich",
                                       "filters": {"site": "example.ch", "after": "2025-01-01"}}}}


def tool_reply(content='{"temperature": 21, "condition": "sunny ☀"}', call_id="call00001",
               name="get_weather"):
    return {"role": "tool", "tool_call_id": call_id, "name": name, "content": content}


def tool_turns(content=None, calls=None, replies=None):
    """A user question, the assistant's tool calls (OpenAI shape), the tool replies, the answer
    and a follow-up question."""
    calls = calls if calls is not None else [weather_call()]
    replies = replies if replies is not None else [tool_reply()]
    return ([{"role": "user", "content": "What's the weather in Zürich for 3 days?"},
             {"role": "assistant", "content": content, "tool_calls": calls}]
            + replies
            + [{"role": "assistant", "content": "It is 21 °C and sunny in Zürich."},
               {"role": "user", "content": "And restaurants there?"}])


PARALLEL_CALLS = tool_turns(
    "", [weather_call(), search_call()],
    [tool_reply(), tool_reply('["Zum Grünen Glas", "Hiltl"]', "call00002", "search")])
STRING_ARGUMENTS = tool_turns(
    "", [weather_call(arguments='{"location": "Zürich", "days": 3}')])

# Qwen3: reasoning in the content (<think>…</think>) or in reasoning_content.
THINKING = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "<think>\nSimple addition.\n</think>\n\n2 + 2 = 4."},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "<think>\nAgain addition: 3+3.\n</think>\n\n6."},
]
REASONING_CONTENT = [
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris.", "reasoning_content": "\nThe user asks geography.\n"},
    {"role": "user", "content": "<tool_response>\nnot a real query\n</tool_response>"},
    {"role": "assistant", "content": "\nNoted.", "reasoning_content": "A tool-looking turn."},
]

CONTENT_BLOCKS = [
    {"role": "system", "content": [{"type": "text", "text": "Be precise."},
                                   {"type": "text", "text": "Use SI units."}]},
    {"role": "user", "content": [{"type": "text", "text": "What is in this picture?"},
                                 {"type": "image_url", "image_url": {"url": "x.png"}}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
    {"role": "user", "content": "Are you sure?"},
]

THINKING_BLOCKS = [
    {"role": "system", "content": [{"type": "text", "text": "Think first. "},
                                   {"type": "thinking", "thinking": "System musing."}]},
    {"role": "user", "content": [{"type": "text", "text": "Describe it."},
                                 {"type": "image", "image": "x.png"}]},
    {"role": "assistant", "content": [{"type": "thinking", "thinking": "It is a cat."},
                                      {"type": "text", "text": "A cat."}]},
    {"role": "user", "content": "Thanks."},
]

DOCUMENTS = [{"doc_id": 1, "title": "Zürich", "text": "Zürich is the largest city in Switzerland."},
             {"doc_id": "b2", "title": "Bern", "text": "Bern is the federal city."}]

LLAMA_BUILTIN = {"builtin_tools": ["brave_search", "wolfram_alpha", "code_interpreter"]}
BUILTIN_CALL = [
    {"role": "user", "content": "Search for the weather in Zürich."},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "b", "type": "function",
         "function": {"name": "brave_search", "arguments": {"query": "weather Zürich"}}}]},
    {"role": "ipython", "content": "Sunny, 21 °C."},
    {"role": "assistant", "content": "Sunny."},
]


def llama_cases(date_from_clock):
    out = [
        ("system", WITH_SYSTEM, True, None),
        ("no_system_no_generation_prompt", CHAT, False, None),
        ("date_string", ONE_USER, True, {"date_string": "01 Jan 2025"}),
        ("tools_in_user_message", tool_turns(None), True, {"tools": TOOLS}),
        ("tools_in_system", [SYSTEM] + tool_turns(None), True,
         {"tools": TOOLS, "tools_in_user_message": False}),
        ("tool_result_as_mapping", tool_turns(None, replies=[
            {"role": "tool", "content": {"temperature": 21, "units": ["°C", None, True]}}]),
         True, None),
        # A tool result of None is neither a mapping nor iterable: printed, not dumped.
        ("tool_result_none", tool_turns(None, replies=[{"role": "tool", "content": None}]), True,
         None),
        ("parallel_calls_rejected", PARALLEL_CALLS, True, {"tools": TOOLS}),
        ("tools_without_user_message", [SYSTEM], True, {"tools": TOOLS}),
        ("custom_tools", ONE_USER, True, {"custom_tools": TOOLS[:1]}),
    ]
    if not date_from_clock:
        out += [
            ("builtin_tools", BUILTIN_CALL, True, LLAMA_BUILTIN),
            ("builtin_tools_and_tools", [SYSTEM] + tool_turns(None), True,
             dict(LLAMA_BUILTIN, tools=TOOLS)),
        ]
    return out


# (template file, bos_token, eos_token, [(case suffix, messages, add_generation_prompt, extra)])
FAMILIES = [
    ("Qwen-Qwen3-0.6B.jinja", "", "<|im_end|>", [
        ("system", WITH_SYSTEM, True, None),
        ("no_system_no_generation_prompt", CHAT, False, None),
        ("thinking_disabled", CHAT, True, {"enable_thinking": False}),
        ("thinking_enabled", CHAT, True, {"enable_thinking": True}),
        ("think_in_content", THINKING, False, None),
        ("think_in_content_then_prompt", THINKING + ONE_USER, True, {"enable_thinking": False}),
        ("reasoning_content", REASONING_CONTENT, True, None),
        ("tools", [SYSTEM] + ONE_USER, True, {"tools": TOOLS}),
        ("tool_calls", tool_turns(""), True, {"tools": TOOLS}),
        ("parallel_calls_string_arguments", PARALLEL_CALLS[:4] + STRING_ARGUMENTS[1:], True, None),
        ("tool_call_with_text", tool_turns("Let me check.\n"), True, None),
        ("null_content_fails", tool_turns(None), True, None),
    ]),
    ("Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>", [
        ("default_system", CHAT, True, None),
        ("system_no_generation_prompt", WITH_SYSTEM, False, None),
        ("tools_default_system", ONE_USER, True, {"tools": TOOLS}),
        ("tools_and_system", [SYSTEM] + tool_turns(None), True, {"tools": TOOLS}),
        ("parallel_calls", PARALLEL_CALLS, True, None),
        ("string_arguments", STRING_ARGUMENTS, True, None),
        ("legacy_conversation_with_tools", CONVERSATION, True, {"tools": TOOLS}),
        ("legacy_tool_calls", [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"arguments": {"city": "Paris", "days": 2}, "name": "get_weather"},
                 "type": "function"}]},
            {"role": "tool", "content": "{\"temp\": 21}"},
            {"role": "tool", "content": "{\"temp\": 19}"},
        ], True, None),
    ]),
    ("meta-llama-Llama-3.1-8B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>",
     llama_cases(False)),
    ("meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>",
     llama_cases(True)),
    ("meta-llama-Llama-3.3-70B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>", [
        ("system", WITH_SYSTEM, True, None),
        ("tools_in_user_message", tool_turns(None), True, {"tools": TOOLS}),
        ("builtin_tools", BUILTIN_CALL, True, LLAMA_BUILTIN),
    ]),
    ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>", [
        ("system", WITH_SYSTEM, True, None),
        ("no_system", CHAT, False, None),
        ("tools", [SYSTEM] + tool_turns(None), True, {"tools": TOOLS}),
        ("parallel_calls_string_arguments", PARALLEL_CALLS[:4] + STRING_ARGUMENTS[1:], True,
         {"tools": TOOLS}),
        ("tool_result_as_mapping", tool_turns(None, replies=[
            {"role": "tool", "tool_call_id": "call00001",
             "content": {"temperature": 21, "note": "it's \"warm\"", "ok": True, "x": None}}]),
         True, None),
        ("bad_tool_call_id", tool_turns(None, calls=[weather_call("call1")]), True, None),
        ("not_alternating", NOT_ALTERNATING, True, None),
        ("unknown_role", CHAT[:1] + [{"role": "narrator", "content": "Once upon a time"}], True,
         None),
    ]),
    ("Mistral-Small-3.2-24B-Instruct-2506.jinja", "<s>", "</s>", [
        ("default_system", CHAT, True, None),
        ("system", WITH_SYSTEM, False, None),
        ("tools", [SYSTEM] + tool_turns(None), True, {"tools": TOOLS}),
        ("parallel_calls_string_arguments", PARALLEL_CALLS[:4] + STRING_ARGUMENTS[1:], True,
         None),
        ("content_blocks", CONTENT_BLOCKS, True, None),
        ("bad_tool_call_id", tool_turns("", calls=[weather_call("toolong123")]), True, None),
        ("not_alternating", NOT_ALTERNATING, True, None),
    ]),
    ("mistralai-Ministral-3-14B-Reasoning-2512.jinja", "<s>", "</s>", [
        ("default_system", CHAT, True, None),
        ("system", WITH_SYSTEM, False, None),
        ("tools", tool_turns(""), True, {"tools": TOOLS}),
        ("parallel_calls_string_arguments", PARALLEL_CALLS[:4] + STRING_ARGUMENTS[1:]
         + [{"role": "assistant", "content": "", "tool_calls": [weather_call(arguments="")]}],
         True, None),
        ("content_and_thinking_blocks", THINKING_BLOCKS, True, None),
        ("empty_assistant", CHAT[:1] + [{"role": "assistant", "content": ""}], True, None),
        ("unknown_role", CHAT[:1] + [{"role": "narrator", "content": "Meanwhile"}], True, None),
        ("not_alternating", NOT_ALTERNATING, True, None),
        ("null_content_fails", tool_turns(None), True, None),
    ]),
    ("microsoft-Phi-3.5-mini-instruct.jinja", "<s>", "<|endoftext|>", [
        ("system", WITH_SYSTEM, True, None),
        ("no_system_no_generation_prompt", CHAT, False, None),
        ("empty_system_and_tool_role", [{"role": "system", "content": ""}] + ONE_USER
         + [tool_reply()], True, None),
    ]),
    ("google-gemma-2-2b-it.jinja", "<bos>", "<eos>", [
        ("chat", CHAT, True, None),
        ("chat_no_generation_prompt", CHAT[:2], False, None),
        ("rejects_system", WITH_SYSTEM, True, None),
        ("not_alternating", NOT_ALTERNATING, True, None),
    ]),
    ("ibm-granite-granite-3.3-2B-Instruct.jinja", "<|end_of_text|>", "<|end_of_text|>", [
        ("default_system", CHAT, True, None),
        ("system_no_generation_prompt", WITH_SYSTEM, False, None),
        ("tools", ONE_USER + [tool_reply()], True, {"tools": TOOLS}),
        ("documents_and_controls", ONE_USER, True,
         {"documents": DOCUMENTS, "controls": {"citations": True, "length": "short"}}),
        ("tools_and_documents", ONE_USER, True,
         {"tools": TOOLS[1:], "documents": DOCUMENTS, "controls": {"hallucinations": True}}),
        ("thinking", ONE_USER, True, {"thinking": True}),
    ]),
    ("ibm-granite-granite-4.0.jinja", "<|end_of_text|>", "<|end_of_text|>", [
        ("default_system", CHAT, True, None),
        ("system_no_generation_prompt", WITH_SYSTEM, False, None),
        ("tools", tool_turns(None), True, {"tools": TOOLS}),
        ("tools_system_and_documents", [SYSTEM] + PARALLEL_CALLS, True,
         {"tools": TOOLS, "documents": DOCUMENTS}),
        ("string_arguments_and_documents", STRING_ARGUMENTS, True, {"documents": DOCUMENTS}),
        ("content_blocks", CONTENT_BLOCKS, True, None),
    ]),
    ("HuggingFaceTB-SmolLM3-3B.jinja", "", "<|im_end|>", [
        ("default_thinking", CHAT, True, None),
        ("thinking_disabled", WITH_SYSTEM, True, {"enable_thinking": False}),
        ("system_no_think", [{"role": "system", "content": "Be terse. /no_think  "}] + CHAT,
         False, None),
        ("system_think_overrides", [{"role": "system", "content": "/think"}] + CHAT, True,
         {"enable_thinking": False}),
        ("tool_calls", tool_turns(None), True, {"tools": TOOLS}),
    ]),
]


def family_cases():
    for file, bos, eos, conversations in FAMILIES:
        stem = file[:-len(".jinja")]
        for suffix, messages, add_generation_prompt, extra in conversations:
            yield (stem + "/" + suffix, file, bos, eos, messages, add_generation_prompt, extra)


def render(env, source, messages, add_generation_prompt, bos, eos, extra):
    # apply_chat_template passes tools and documents (None when not given), the special tokens
    # and the caller's keyword arguments.
    variables = {"tools": None, "documents": None, **(extra or {})}
    case = {}
    try:
        case["rendered"] = env.from_string(source).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=bos, eos_token=eos, **variables)
    except Exception as e:  # noqa: BLE001 -- any failure is a reference outcome
        if type(e) is jinja2.exceptions.TemplateError:  # raise_exception
            case["error"] = str(e)
        else:
            case["fails"] = f"{type(e).__name__}: {e}"
    return case


def main(out_path):
    templates_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chat-templates")
    env = environment()
    results = []
    for name, template, messages, add_generation_prompt, extra in synthetic_cases():
        case = {"name": name, "template": template, "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "bos_token": "<s>", "eos_token": "</s>", "extra": extra}
        case.update(render(env, template, messages, add_generation_prompt, "<s>", "</s>", extra))
        results.append(case)
    for name, file, bos, eos, messages, add_generation_prompt, extra in family_cases():
        with open(os.path.join(templates_dir, file), encoding="utf-8") as f:
            source = f.read()
        case = {"name": name, "template_file": file, "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "bos_token": bos, "eos_token": eos, "extra": extra}
        case.update(render(env, source, messages, add_generation_prompt, bos, eos, extra))
        results.append(case)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"generator": "make_chat_template_cases.py, jinja2 " + jinja2.__version__,
                   "now": NOW, "cases": results}, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
