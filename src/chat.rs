//! Chat templates: turning a conversation into the prompt text a model was trained on.
//!
//! Templates are Jinja2, rendered with minijinja the way Hugging Face `transformers` renders
//! `tokenizer.chat_template` (`apply_chat_template`), which is what llama.cpp's reference outputs
//! and most GGUF files assume:
//!
//! - `trim_blocks` and `lstrip_blocks` on, `keep_trailing_newline` off;
//! - variables `messages`, `add_generation_prompt`, `bos_token`, `eos_token` (plus any extra the
//!   caller passes, e.g. `tools`);
//! - `raise_exception(msg)` fails the render with [`Error::ChatTemplate`] carrying `msg`;
//! - `strftime_now(fmt)` formats the current time (UTC; see [`format_time`]);
//! - `tojson` behaves like Python's `json.dumps(x, ensure_ascii=False)`: `", "` and `": "`
//!   separators, no HTML escaping, `indent`, `separators` and `sort_keys` arguments;
//! - Python string, list and dict methods (`.strip()`, `.startswith()`, `.split()`, `.items()`,
//!   `.get()`, …) through minijinja-contrib's pycompat;
//! - undefined values are lenient as in Jinja2: printing or testing one is fine (empty, false),
//!   an attribute of a defined map that is missing is undefined, an attribute of an undefined
//!   value is an error;
//! - `none`, booleans, lists and dicts print as Python prints them (`None`, `True`, `['a']`).
//!
//! When a GGUF file has no template, [`ChatTemplate::from_gguf`] picks a built-in one by
//! architecture. The built-ins are Jinja reformulations of llama.cpp's hard-coded formats
//! (`llm_chat_apply_template` in llama-chat.cpp), so they produce the same text llama.cpp does;
//! like llama.cpp's, they do not emit the BOS token (the tokenizer adds it).
//!
//! Maps keep their insertion order, as Python dicts do (minijinja's `preserve_order`): a
//! [`ChatMessage`] is `{role, content}` in that order. JSON passed in as `serde_json::Value`
//! arrives with its object keys sorted (serde_json is built without `preserve_order`), so
//! `tojson` of such a dict lists its keys sorted where Python would keep the caller's order.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

use crate::gguf::GgufFile;
use crate::{Error, Result};

/// The GGUF key holding a model's Jinja chat template.
pub const KEY_CHAT_TEMPLATE: &str = "tokenizer.chat_template";
/// The GGUF key naming the architecture, which chooses the built-in template.
pub const KEY_ARCHITECTURE: &str = "general.architecture";

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
    /// The file's `tokenizer.chat_template`; without one, a built-in chosen by
    /// `general.architecture`: the Gemma format for Gemma models, ChatML for the rest.
    pub fn from_gguf(file: &GgufFile) -> Result<ChatTemplate> {
        if let Some(source) = file.opt_str(KEY_CHAT_TEMPLATE)? {
            return ChatTemplate::from_source(source);
        }
        let arch = file.opt_str(KEY_ARCHITECTURE)?.unwrap_or("");
        ChatTemplate::builtin(builtin_for_architecture(arch))
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
    /// variables take precedence over entries of the same name.
    pub fn render_with<M: serde::Serialize + ?Sized>(
        &self,
        messages: &M,
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
        extra: &serde_json::Value,
    ) -> Result<String> {
        let mut context: BTreeMap<String, Value> = BTreeMap::new();
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

    /// The Jinja source of the template.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The built-in template for a GGUF `general.architecture` without a template of its own.
pub fn builtin_for_architecture(arch: &str) -> &'static str {
    if arch.starts_with("gemma") {
        "gemma"
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

const MISTRAL_V7: &str = r#"{%- for message in messages -%}
{%- if message.role == 'system' -%}{{- '[SYSTEM_PROMPT] ' + message.content + '[/SYSTEM_PROMPT]' -}}
{%- elif message.role == 'user' -%}{{- '[INST] ' + message.content + '[/INST]' -}}
{%- else -%}{{- ' ' + message.content + '</s>' -}}
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

/// The source of the built-in template `name`. The Mistral v1/v3 sources are assembled from
/// their shared body so the three variants cannot drift apart.
fn builtin_source(name: &str) -> Option<Cow<'static, str>> {
    let mistral = |lead: &str, trail: &str, trim_reply: bool| {
        Cow::Owned(format!(
            "{WS}{{%- set lead = '{lead}' -%}}{{%- set trail = '{trail}' -%}}\
             {{%- set trim_reply = {trim_reply} -%}}{MISTRAL_V1_V3_BODY}"
        ))
    };
    Some(match name {
        "chatml" => Cow::Borrowed(CHATML),
        "gemma" => Cow::Borrowed(GEMMA),
        "llama2" => Cow::Borrowed(LLAMA2),
        "llama2-sys" => Cow::Borrowed(LLAMA2_SYS),
        "llama3" => Cow::Borrowed(LLAMA3),
        "mistral-v1" => mistral(" ", " ", false),
        "mistral-v3" => mistral("", " ", true),
        "mistral-v3-tekken" => mistral("", "", false),
        "mistral-v7" => Cow::Borrowed(MISTRAL_V7),
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
    env.set_unknown_method_callback(python_methods);
    env.set_formatter(python_formatter);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env
}

/// Python methods on values: pycompat's, except where it departs from Python on text that is
/// not ASCII: `str.find`/`str.rfind` return character (not byte) offsets, and `str.title`
/// starts a word after any uncased character (`«word»` → `«Word»`), as Python does.
fn python_methods(
    state: &minijinja::State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, minijinja::Error> {
    match (value.as_str(), method) {
        (Some(s), "find") => python_find(s, args, false),
        (Some(s), "rfind") => python_find(s, args, true),
        (Some(s), "title") => {
            let () = minijinja::value::from_args(args)?;
            Ok(Value::from(python_title(s)))
        }
        _ => minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    }
}

/// `str.find(sub[, start[, end]])` / `str.rfind`: the character offset of `sub` within
/// `s[start:end]` (Python slice bounds), or -1.
fn python_find(
    s: &str,
    args: &[Value],
    from_the_end: bool,
) -> std::result::Result<Value, minijinja::Error> {
    let (sub, start, end): (String, Option<i64>, Option<i64>) = minijinja::value::from_args(args)?;
    let chars: Vec<char> = s.chars().collect();
    let len = chars.len() as i64;
    let clamp = |i: i64| if i < 0 { (i + len).max(0) } else { i.min(len) } as usize;
    let start = clamp(start.unwrap_or(0));
    let end = clamp(end.unwrap_or(len));
    if start > end {
        return Ok(Value::from(-1));
    }
    let window: String = chars[start..end].iter().collect();
    let found = if from_the_end {
        window.rfind(&sub)
    } else {
        window.find(&sub)
    };
    Ok(Value::from(found.map_or(-1, |byte| {
        (start + window[..byte].chars().count()) as i64
    })))
}

/// `str.title()`: upper-case a cased character that follows an uncased one, lower-case the rest.
fn python_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut previous_cased = false;
    for c in s.chars() {
        if previous_cased {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        previous_cased = c.is_lowercase() || c.is_uppercase();
    }
    out
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

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Format `unix_seconds` (UTC) with a C strftime format. Supported: `%Y %y %m %d %e %j %H %I %M
/// %S %p %a %A %b %h %B %F %T %D %R %n %t %%`, glibc's `%-d`-style unpadded forms, and `%Z %z`
/// as empty (Python's naive datetimes have no zone);
/// anything else is copied through unchanged, as glibc does. Templates only use these to write
/// today's date into the system prompt.
pub fn format_time(format: &str, unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let second_of_day = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let hour = second_of_day / 3600;
    let minute = second_of_day % 3600 / 60;
    let second = second_of_day % 60;
    // 1970-01-01 was a Thursday (index 4 with Sunday = 0).
    let weekday = (days + 4).rem_euclid(7) as usize;
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let month_name = MONTHS[(month - 1) as usize];
    let weekday_name = WEEKDAYS[weekday];

    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let unpadded = chars.peek() == Some(&'-');
        if unpadded {
            chars.next();
        }
        let Some(spec) = chars.next() else {
            out.push('%');
            break;
        };
        let number = |out: &mut String, value: i64, width: usize| {
            if unpadded {
                let _ = write!(out, "{value}");
            } else {
                let _ = write!(out, "{value:0width$}");
            }
        };
        match spec {
            'Y' => {
                let _ = write!(out, "{year}");
            }
            'y' => number(&mut out, year.rem_euclid(100), 2),
            'm' => number(&mut out, month, 2),
            'd' => number(&mut out, day, 2),
            'e' => {
                let _ = if unpadded {
                    write!(out, "{day}")
                } else {
                    write!(out, "{day:2}")
                };
            }
            'j' => number(&mut out, day_of_year, 3),
            'H' => number(&mut out, hour, 2),
            'I' => number(&mut out, hour12, 2),
            'M' => number(&mut out, minute, 2),
            'S' => number(&mut out, second, 2),
            'p' => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            'a' => out.push_str(&weekday_name[..3]),
            'A' => out.push_str(weekday_name),
            'b' | 'h' => out.push_str(&month_name[..3]),
            'B' => out.push_str(month_name),
            'F' => {
                let _ = write!(out, "{year}-{month:02}-{day:02}");
            }
            'T' => {
                let _ = write!(out, "{hour:02}:{minute:02}:{second:02}");
            }
            'R' => {
                let _ = write!(out, "{hour:02}:{minute:02}");
            }
            'D' => {
                let _ = write!(out, "{month:02}/{day:02}/{:02}", year.rem_euclid(100));
            }
            // transformers formats a naive datetime, whose zone fields are empty.
            'Z' | 'z' => {}
            'n' => out.push('\n'),
            't' => out.push('\t'),
            '%' => out.push('%'),
            other => {
                out.push('%');
                if unpadded {
                    out.push('-');
                }
                out.push(other);
            }
        }
    }
    out
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 in the proleptic Gregorian
/// calendar, by counting 400-year eras of 146097 days that start on March 1 (so the leap day
/// is the last day of an era-year).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Prints values as Jinja2 (that is, Python's `str()`) does: `None`, `True`/`False`, lists and
/// dicts in Python repr; undefined prints nothing.
fn python_formatter(
    out: &mut minijinja::Output,
    _state: &minijinja::State,
    value: &Value,
) -> std::result::Result<(), minijinja::Error> {
    let mut text = String::new();
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => text.push_str(value.as_str().unwrap_or_default()),
        _ => python_repr(value, &mut text),
    }
    out.write_str(&text).map_err(minijinja::Error::from)
}

/// Python's `repr()` of a value (what `str()` gives for everything but top-level strings).
fn python_repr(value: &Value, out: &mut String) {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => {
            if value.is_integer() {
                let _ = write!(out, "{value}");
            } else {
                let x = f64::try_from(value.clone()).unwrap_or(f64::NAN);
                out.push_str(&python_float(x, false));
            }
        }
        ValueKind::String => python_str_repr(value.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(items) = value.try_iter() {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    python_repr(&item, out);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(keys) = value.try_iter() {
                for (i, key) in keys.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    python_repr(&key, out);
                    out.push_str(": ");
                    python_repr(&value.get_item(&key).unwrap_or_default(), out);
                }
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

/// Python's repr of a str: single quotes unless the text has one and no double quote.
fn python_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's repr of a float (shortest round-trip digits; exponent form below 1e-4 and from
/// 1e16 on). For JSON, non-finite values are spelled as Python's json module spells them.
fn python_float(x: f64, json: bool) -> String {
    if x.is_nan() {
        return if json { "NaN" } else { "nan" }.to_string();
    }
    if x.is_infinite() {
        let sign = if x < 0.0 { "-" } else { "" };
        return format!("{sign}{}", if json { "Infinity" } else { "inf" });
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    // `{:e}` gives the shortest round-trip digits as d[.ddd]e<exp>.
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let mut positional = format!("{x}");
        if !positional.contains('.') {
            positional.push_str(".0");
        }
        positional
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    }
}

/// `tojson`, as transformers defines it for chat templates:
/// `json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)`.
fn tojson(
    value: &Value,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> std::result::Result<Value, minijinja::Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")?.or(indent) {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_string(),
            None => " ".repeat(usize::try_from(v.clone()).map_err(|_| {
                minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: indent must be an integer or a string, got {v}"),
                )
            })?),
        }),
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let (item_separator, key_separator) = match kwargs.get::<Option<Vec<String>>>("separators")? {
        Some(pair) if pair.len() == 2 => (pair[0].clone(), pair[1].clone()),
        Some(_) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair of strings",
            ))
        }
        // Python's defaults: ", " without indent, "," with it (the newline separates).
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    kwargs.assert_all_used()?;
    let style = JsonStyle {
        indent,
        item_separator,
        key_separator,
        sort_keys,
        ensure_ascii,
    };
    let mut out = String::new();
    style.write(value, 0, &mut out)?;
    Ok(Value::from(out))
}

/// The knobs of Python's `json.dumps` that templates use.
struct JsonStyle {
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

impl JsonStyle {
    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(indent) = &self.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(indent);
            }
        }
    }

    fn write(
        &self,
        value: &Value,
        depth: usize,
        out: &mut String,
    ) -> std::result::Result<(), minijinja::Error> {
        match value.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => {
                if value.is_integer() {
                    let _ = write!(out, "{value}");
                } else {
                    let x = f64::try_from(value.clone()).unwrap_or(f64::NAN);
                    out.push_str(&python_float(x, true));
                }
            }
            ValueKind::String => {
                self.write_string(value.as_str().unwrap_or_default(), out);
            }
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                if items.is_empty() {
                    out.push_str("[]");
                    return Ok(());
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_separator);
                    }
                    self.newline(depth + 1, out);
                    self.write(item, depth + 1, out)?;
                }
                self.newline(depth, out);
                out.push(']');
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = value.try_iter()?.collect();
                if keys.is_empty() {
                    out.push_str("{}");
                    return Ok(());
                }
                if self.sort_keys {
                    keys.sort();
                }
                out.push('{');
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_separator);
                    }
                    self.newline(depth + 1, out);
                    // JSON object keys are strings; Python converts numbers and bools.
                    match key.as_str() {
                        Some(s) => self.write_string(s, out),
                        None => {
                            let mut text = String::new();
                            self.write(key, depth + 1, &mut text)?;
                            self.write_string(&text, out);
                        }
                    }
                    out.push_str(&self.key_separator);
                    self.write(&value.get_item(key)?, depth + 1, out)?;
                }
                self.newline(depth, out);
                out.push('}');
            }
            kind => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: a value of kind {kind} is not JSON serializable"),
                ))
            }
        }
        Ok(())
    }

    fn write_string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c if self.ensure_ascii && !c.is_ascii() => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip_and_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2000-02-29 is day 11016; 1900 was no leap year, 2000 was.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-25_508), (1900, 3, 1));
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn python_find_and_title_count_characters() {
        let find = |args: &[Value]| python_find("añbñc", args, false).unwrap();
        // Python: 'añbñc'.find('ñ') == 1, .find('ñ', 2) == 3, .find('ñ', -2) == 3,
        // .find('c', 0, 4) == -1, .rfind('ñ') == 3.
        assert_eq!(find(&[Value::from("ñ")]), Value::from(1));
        assert_eq!(find(&[Value::from("ñ"), Value::from(2)]), Value::from(3));
        assert_eq!(find(&[Value::from("ñ"), Value::from(-2)]), Value::from(3));
        assert_eq!(
            find(&[Value::from("c"), Value::from(0), Value::from(4)]),
            Value::from(-1)
        );
        let rfind = python_find("añbñc", &[Value::from("ñ")], true).unwrap();
        assert_eq!(rfind, Value::from(3));
        // Python: "hELLO «wörld» it's 3rd".title() == "Hello «Wörld» It'S 3Rd".
        assert_eq!(
            python_title("hELLO «wörld» it's 3rd"),
            "Hello «Wörld» It'S 3Rd"
        );
    }

    #[test]
    fn python_float_repr_matches_python() {
        assert_eq!(python_float(1.0, false), "1.0");
        assert_eq!(python_float(0.1, false), "0.1");
        assert_eq!(python_float(1e-5, false), "1e-05");
        assert_eq!(python_float(1.5e16, false), "1.5e+16");
        assert_eq!(python_float(123456.789, false), "123456.789");
        assert_eq!(python_float(f64::INFINITY, true), "Infinity");
    }
}
