#!/usr/bin/env python3
"""Reference renderings of chat templates by Jinja2, configured as Hugging Face transformers
configures it for `apply_chat_template` (sandbox, trim_blocks, lstrip_blocks, loopcontrols,
raise_exception, tojson = json.dumps(ensure_ascii=False, ...)).

usage: make_chat_template_cases.py OUT.json      (needs only jinja2)

Each case: name, template, messages, add_generation_prompt, bos_token, eos_token, extra (more
template variables or null) and either `rendered` (the text) or `error` (a substring of the
exception message the render must fail with).
"""
import json
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


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
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

# Tool dicts with keys already in sorted order at every level, so insertion order (Python) and
# sorted order (a runtime without order-preserving maps) agree.
TOOLS = [{
    "function": {
        "description": "Get the weather <for> a city & \"date\" — today",
        "name": "get_weather",
        "parameters": {
            "properties": {"city": {"type": "string"}, "days": {"maximum": 7, "type": "integer"}},
            "required": ["city"],
            "type": "object",
        },
    },
    "type": "function",
}]

MISTRAL_ALTERNATION = """{%- for message in messages %}
{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
{%- endif %}
{%- if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}
{%- else %}{{ message['content'] + eos_token }}{% endif %}
{%- endfor %}"""


def cases(qwen_template):
    no_system = CONVERSATION[1:]
    out = [
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
    ]
    if qwen_template:
        out.append(("qwen2_with_tools", qwen_template, CONVERSATION, True, {"tools": TOOLS}))
        out.append(("qwen2_tool_calls", qwen_template, [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"arguments": {"city": "Paris", "days": 2}, "name": "get_weather"},
                 "type": "function"}]},
            {"role": "tool", "content": "{\"temp\": 21}"},
            {"role": "tool", "content": "{\"temp\": 19}"},
        ], True, None))
    return out


def main(out_path, qwen_template_path=None):
    qwen_template = open(qwen_template_path).read() if qwen_template_path else None
    env = environment()
    results = []
    for name, template, messages, add_generation_prompt, extra in cases(qwen_template):
        case = {"name": name, "template": template, "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "bos_token": "<s>", "eos_token": "</s>", "extra": extra}
        try:
            case["rendered"] = env.from_string(template).render(
                messages=messages, add_generation_prompt=add_generation_prompt,
                bos_token="<s>", eos_token="</s>", **(extra or {}))
        except jinja2.exceptions.TemplateError as e:
            case["error"] = str(e)
        results.append(case)
    with open(out_path, "w") as f:
        json.dump({"generator": "make_chat_template_cases.py, jinja2 " + jinja2.__version__,
                   "cases": results}, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
