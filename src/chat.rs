//! Chat templates: turning a conversation into the prompt text a model was trained on.
//!
//! Templates are Jinja2, rendered with minijinja the way Hugging Face `transformers` renders
//! `tokenizer.chat_template` (`apply_chat_template`), which is what llama.cpp's reference outputs
//! and most GGUF files assume:
//!
//! - `trim_blocks` and `lstrip_blocks` on, `keep_trailing_newline` off;
//! - variables `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `tools` and
//!   `documents` (`none` unless given), plus any extra the caller passes (`enable_thinking`,
//!   `date_string`, …);
//! - `raise_exception(msg)` fails the render with [`Error::ChatTemplate`] carrying `msg`;
//! - `strftime_now(fmt)` formats the current time (UTC; see [`format_time`]), or the time fixed
//!   by [`ChatTemplate::set_now`];
//! - `tojson` behaves like Python's `json.dumps(x, ensure_ascii=False)`: `", "` and `": "`
//!   separators, no HTML escaping, `indent`, `separators` and `sort_keys` arguments;
//! - Python string, list and dict methods (`.strip()`, `.startswith()`, `.split()`, `.items()`,
//!   `.get()`, …) as Python defines them (minijinja-contrib's pycompat, corrected and completed
//!   in `pystr`);
//! - the filters and tests whose minijinja definitions differ from Jinja2's (`string`, `join`,
//!   `trim`, `round`, `length`, `is sequence`, `is iterable`, …) as Jinja2 defines them;
//! - undefined values are lenient as in Jinja2: printing or testing one is fine (empty, false),
//!   an attribute of a defined map that is missing is undefined, an attribute of an undefined
//!   value is an error;
//! - `none`, booleans, lists and dicts print as Python prints them (`None`, `True`, `['a']`),
//!   there and wherever Jinja2 takes `str()` of a value (`|string`, `|join`, `'-'.join(…)`).
//!
//! Where minijinja's operators themselves differ, a template renders differently from Jinja2:
//! `~` writes lists and dicts in minijinja's notation (`{"a": 1}`), `//` and `%` round towards
//! zero's side for negative divisors (Python floors), `1 / 0` is `inf` (Python raises),
//! `'%s' % x` is not supported, tuples are lists (and print as such), and a `for` loop over
//! `none` runs zero times (Python raises). No chat template we know of depends on these.
//!
//! When a GGUF file has no template, [`ChatTemplate::from_gguf`] uses the built-in llama.cpp
//! falls back to (see [`builtin_for_model`]). The built-ins are Jinja reformulations of
//! llama.cpp's hard-coded formats (`llm_chat_apply_template` in llama-chat.cpp), so they produce
//! the same text llama.cpp does; like llama.cpp's, they do not emit the BOS token (the
//! tokenizer adds it).
//!
//! Maps keep their insertion order, as Python dicts do (minijinja's and serde_json's
//! `preserve_order`): a [`ChatMessage`] is `{role, content}` in that order, and `tojson` of a
//! dict passed in as `serde_json::Value` lists its keys in the caller's order.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

use crate::gguf::GgufFile;
use crate::{Error, Result};

mod json;
mod pystr;
mod python;
mod time;

pub use time::format_time;

/// The GGUF key holding a model's Jinja chat template.
pub const KEY_CHAT_TEMPLATE: &str = "tokenizer.chat_template";
/// The GGUF key of the template's tool-use variant, which some models ship alone.
pub const KEY_CHAT_TEMPLATE_TOOL_USE: &str = "tokenizer.chat_template.tool_use";
/// The GGUF key naming the architecture, whose `{arch}.block_count` takes part in choosing the
/// built-in template.
pub const KEY_ARCHITECTURE: &str = "general.architecture";
/// The GGUF key naming the pre-tokenizer, which takes part in choosing the built-in template.
pub const KEY_PRE_TOKENIZER: &str = "tokenizer.ggml.pre";

/// The name the template is stored under in its environment.
const TEMPLATE_NAME: &str = "chat_template";

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, or whatever else the template understands (`tool`, …).
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template, ready to render any number of conversations.
pub struct ChatTemplate {
    /// Holds the one compiled template (under [`TEMPLATE_NAME`]) and its source.
    env: Environment<'static>,
    source: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// The file's template, chosen as llama.cpp chooses it: `tokenizer.chat_template`, else
    /// `tokenizer.chat_template.tool_use`, else the built-in [`builtin_for_model`] names.
    pub fn from_gguf(file: &GgufFile) -> Result<ChatTemplate> {
        match file.opt_str(KEY_CHAT_TEMPLATE)? {
            // llama.cpp reads a template that is just the name `chatml` as that format.
            Some("chatml") => return ChatTemplate::builtin("chatml"),
            Some(source) => return ChatTemplate::from_source(source),
            None => {}
        }
        // llama.cpp takes the tool-use variant when it is the only one.
        if let Some(source) = file.opt_str(KEY_CHAT_TEMPLATE_TOOL_USE)? {
            return ChatTemplate::from_source(source);
        }
        let arch = file.opt_str(KEY_ARCHITECTURE)?.unwrap_or("");
        let n_layer = file.opt_u32(&format!("{arch}.block_count"))?;
        let pre_tokenizer = file.opt_str(KEY_PRE_TOKENIZER)?;
        ChatTemplate::builtin(builtin_for_model(pre_tokenizer, n_layer))
    }

    /// A built-in template by name (see [`BUILTIN_NAMES`]).
    pub fn builtin(name: &str) -> Result<ChatTemplate> {
        let source = builtin_source(name).ok_or_else(|| {
            Error::ChatTemplate(format!(
                "no built-in template named `{name}` (built-in: {})",
                BUILTIN_NAMES.join(", ")
            ))
        })?;
        ChatTemplate::from_source(&source)
    }

    /// Compile a Jinja template.
    pub fn from_source(source: &str) -> Result<ChatTemplate> {
        let source = source.to_string();
        let mut env = hf_environment();
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(template_error)?;
        Ok(ChatTemplate { env, source })
    }

    /// Render `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// reply begins. `bos_token` / `eos_token` are the text of those tokens.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String> {
        self.render_with(
            messages,
            add_generation_prompt,
            bos_token,
            eos_token,
            &serde_json::Value::Null,
        )
    }

    /// [`ChatTemplate::render`] for any serializable `messages` (e.g. JSON messages with
    /// `tool_calls`), with extra template variables: `extra` is `null` or a JSON object whose
    /// entries become variables (e.g. `tools`, `documents`, `date_string`). The four standard
    /// variables take precedence over entries of the same name; `tools` and `documents` are
    /// `none` unless given, as in `apply_chat_template`.
    pub fn render_with<M: serde::Serialize + ?Sized>(
        &self,
        messages: &M,
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
        extra: &serde_json::Value,
    ) -> Result<String> {
        // apply_chat_template always passes `tools` and `documents`, None when not given.
        let mut context: BTreeMap<String, Value> = BTreeMap::new();
        context.insert("tools".into(), Value::from(()));
        context.insert("documents".into(), Value::from(()));
        match extra {
            serde_json::Value::Null => {}
            serde_json::Value::Object(entries) => {
                for (key, value) in entries {
                    context.insert(key.clone(), Value::from_serialize(value));
                }
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "extra chat template variables must be a JSON object, got {other}"
                )))
            }
        }
        context.insert("messages".into(), Value::from_serialize(messages));
        context.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        context.insert("bos_token".into(), Value::from(bos_token));
        context.insert("eos_token".into(), Value::from(eos_token));
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(template_error)?;
        template.render(context).map_err(template_error)
    }

    /// Fix the time `strftime_now` formats to `unix_seconds` (UTC), for prompts that must not
    /// depend on the day they are rendered; `None` goes back to the current time.
    pub fn set_now(&mut self, unix_seconds: Option<i64>) {
        match unix_seconds {
            Some(now) => self
                .env
                .add_function("strftime_now", move |format: String| {
                    format_time(&format, now)
                }),
            None => self.env.add_function("strftime_now", strftime_now),
        }
    }

    /// The Jinja source of the template.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The built-in template llama.cpp uses for a model whose GGUF file has no template
/// (`llama_model_chat_template` and `common_chat_templates_init`): ChatML, whatever the
/// architecture, except for Mistral Small 3.1, recognized by its tekken pre-tokenizer and 40
/// layers, which gets Mistral's v7 tekken format.
pub fn builtin_for_model(pre_tokenizer: Option<&str>, n_layer: Option<u32>) -> &'static str {
    if pre_tokenizer == Some("tekken") && n_layer == Some(40) {
        "mistral-v7-tekken"
    } else {
        "chatml"
    }
}

/// Names [`ChatTemplate::builtin`] accepts (llama.cpp's names for the same formats).
pub const BUILTIN_NAMES: &[&str] = &[
    "chatml",
    "gemma",
    "llama2",
    "llama2-sys",
    "llama3",
    "mistral-v1",
    "mistral-v3",
    "mistral-v3-tekken",
    "mistral-v7",
    "mistral-v7-tekken",
    "phi3",
    "phi4",
    "zephyr",
];

// The built-ins. `ws` is C's isspace set, so `trim(ws)` trims exactly what llama.cpp's trim()
// does (Jinja's bare `trim` would also strip Unicode spaces).
const WS: &str = r#"{%- set ws = ' \t\n\x0b\x0c\r' -%}"#;

const CHATML: &str = r#"{%- for message in messages -%}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"#;

// Gemma has no system role: system texts (trimmed, concatenated) open the next non-model turn.
const GEMMA: &str = r#"{%- set ws = ' \t\n\x0b\x0c\r' -%}
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
{%- if message.role == 'system' -%}
{%- set ns.system = ns.system + (message.content | trim(ws)) -%}
{%- else -%}
{%- set role = 'model' if message.role == 'assistant' else message.role -%}
{{- '<start_of_turn>' + role + '\n' -}}
{%- if ns.system and role != 'model' -%}
{{- ns.system + '\n\n' -}}
{%- set ns.system = '' -%}
{%- endif -%}
{{- (message.content | trim(ws)) + '<end_of_turn>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}"#;

const LLAMA3: &str = r#"{%- set ws = ' \t\n\x0b\x0c\r' -%}
{%- for message in messages -%}
{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' + (message.content | trim(ws)) + '<|eot_id|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}{%- endif -%}"#;

// Llama 2: one [INST] block per exchange; the plain variant has no <<SYS>> block and puts the
// system text on its own line instead. (No generation prompt: a user turn already ends it.)
const LLAMA2: &str = r#"{%- set ns = namespace(inside=true) -%}
{{- '[INST] ' -}}
{%- for message in messages -%}
{%- if not ns.inside -%}{%- set ns.inside = true -%}{{- '[INST] ' -}}{%- endif -%}
{%- if message.role == 'system' -%}{{- message.content + '\n' -}}
{%- elif message.role == 'user' -%}{{- message.content + ' [/INST]' -}}
{%- else -%}{{- message.content + '</s>' -}}{%- set ns.inside = false -%}
{%- endif -%}
{%- endfor -%}"#;

const LLAMA2_SYS: &str = r#"{%- set ns = namespace(inside=true) -%}
{{- '[INST] ' -}}
{%- for message in messages -%}
{%- if not ns.inside -%}{%- set ns.inside = true -%}{{- '[INST] ' -}}{%- endif -%}
{%- if message.role == 'system' -%}{{- '<<SYS>>\n' + message.content + '\n<</SYS>>\n\n' -}}
{%- elif message.role == 'user' -%}{{- message.content + ' [/INST]' -}}
{%- else -%}{{- message.content + '</s>' -}}{%- set ns.inside = false -%}
{%- endif -%}
{%- endfor -%}"#;

// Mistral v1/v3/v3-tekken differ only in spacing and in trimming assistant text; `lead`,
// `trail` and `trim_reply` are set by the prefix each variant puts before this body.
const MISTRAL_V1_V3_BODY: &str = r#"
{%- set ns = namespace(inside=false) -%}
{%- for message in messages -%}
{%- if not ns.inside -%}{{- lead + '[INST]' + trail -}}{%- set ns.inside = true -%}{%- endif -%}
{%- if message.role == 'system' -%}{{- message.content + '\n\n' -}}
{%- elif message.role == 'user' -%}{{- message.content + lead + '[/INST]' -}}
{%- else -%}
{{- trail + ((message.content | trim(ws)) if trim_reply else message.content) + '</s>' -}}
{%- set ns.inside = false -%}
{%- endif -%}
{%- endfor -%}"#;

// Mistral v7 and v7-tekken differ only in the space `sp` after each tag (set by the prefix).
const MISTRAL_V7_BODY: &str = r#"{%- for message in messages -%}
{%- if message.role == 'system' -%}{{- '[SYSTEM_PROMPT]' + sp + message.content + '[/SYSTEM_PROMPT]' -}}
{%- elif message.role == 'user' -%}{{- '[INST]' + sp + message.content + '[/INST]' -}}
{%- else -%}{{- sp + message.content + '</s>' -}}
{%- endif -%}
{%- endfor -%}"#;

const PHI3: &str = r#"{%- for message in messages -%}
{{- '<|' + message.role + '|>\n' + message.content + '<|end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}"#;

const PHI4: &str = r#"{%- for message in messages -%}
{{- '<|im_start|>' + message.role + '<|im_sep|>' + message.content + '<|im_end|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant<|im_sep|>' -}}{%- endif -%}"#;

const ZEPHYR: &str = r#"{%- for message in messages -%}
{{- '<|' + message.role + '|>\n' + message.content + '<|endoftext|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}"#;

/// The source of the built-in template `name`. The Mistral v1/v3 and v7 sources are assembled
/// from their shared bodies so the variants cannot drift apart.
fn builtin_source(name: &str) -> Option<Cow<'static, str>> {
    let mistral = |lead: &str, trail: &str, trim_reply: bool| {
        Cow::Owned(format!(
            "{WS}{{%- set lead = '{lead}' -%}}{{%- set trail = '{trail}' -%}}\
             {{%- set trim_reply = {trim_reply} -%}}{MISTRAL_V1_V3_BODY}"
        ))
    };
    let mistral_v7 = |sp: &str| Cow::Owned(format!("{{%- set sp = '{sp}' -%}}{MISTRAL_V7_BODY}"));
    Some(match name {
        "chatml" => Cow::Borrowed(CHATML),
        "gemma" => Cow::Borrowed(GEMMA),
        "llama2" => Cow::Borrowed(LLAMA2),
        "llama2-sys" => Cow::Borrowed(LLAMA2_SYS),
        "llama3" => Cow::Borrowed(LLAMA3),
        "mistral-v1" => mistral(" ", " ", false),
        "mistral-v3" => mistral("", " ", true),
        "mistral-v3-tekken" => mistral("", "", false),
        "mistral-v7" => mistral_v7(" "),
        "mistral-v7-tekken" => mistral_v7(""),
        "phi3" => Cow::Borrowed(PHI3),
        "phi4" => Cow::Borrowed(PHI4),
        "zephyr" => Cow::Borrowed(ZEPHYR),
        _ => return None,
    })
}

/// An environment configured as Hugging Face's `apply_chat_template` configures Jinja2.
fn hf_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    python::install(&mut env);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", json::tojson);
    env
}

fn template_error(e: minijinja::Error) -> Error {
    // minijinja's message names the template line; causes (e.g. a failing function) follow.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let _ = write!(message, ": {cause}");
        source = cause.source();
    }
    Error::ChatTemplate(message)
}

/// `raise_exception(msg)`: templates call it to reject a conversation they cannot format.
fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("template raised an exception: {message}"),
    ))
}

/// `strftime_now(format)`: the current time formatted as C's strftime would. transformers uses
/// the local time; we use UTC, so a prompt does not depend on the machine's time zone.
fn strftime_now(format: String) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    format_time(&format, now)
}
