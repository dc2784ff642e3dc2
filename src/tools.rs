//! Tool calls: the functions a caller offers go into the chat template, and the model's reply,
//! written in its family's tool-call format, comes back as calls with a name and JSON
//! arguments.
//!
//! Each model family was trained on one way of writing a call, which its chat template shows
//! it. [`ToolFormat::detect`] reads the template to find it:
//!
//! | format | a call as the model writes it |
//! |---|---|
//! | [`ToolFormat::Hermes`] (Qwen 2.5/3, Hermes, SmolLM3) | `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>` |
//! | [`ToolFormat::Llama3`] (Llama 3.1–3.3) | `{"name": …, "parameters": {…}}`, maybe after `<|python_tag|>` |
//! | [`ToolFormat::MistralJson`] (Mistral Nemo, Small 3) | `[TOOL_CALLS][{"name": …, "arguments": {…}, "id": …}]` |
//! | [`ToolFormat::MistralArgs`] (Ministral, Magistral, Devstral) | `[TOOL_CALLS]name[ARGS]{…}` |
//! | [`ToolFormat::TaggedList`] (Granite 3, Phi-4-mini) | `<|tool_call|>[{"name": …, "arguments": {…}}]` |
//! | [`ToolFormat::Generic`] (every other template) | `{"tool_calls": [{"name": …, "arguments": {…}}]}` or `{"response": …}` |
//!
//! A template that shows no format gets the generic one: a system message describes the tools
//! and the JSON reply, and the reply is always constrained to that JSON, as llama.cpp does for
//! such templates.
//!
//! When a call is required (`tool_choice` "required" or a named function),
//! [`ToolFormat::constraint`] gives a grammar that admits only valid calls: the format's markers
//! around JSON that matches the function's parameter schema. Otherwise the model writes freely
//! and [`ToolFormat::parse`] (or [`ReplyStream`], piece by piece) finds the calls it wrote; a
//! call whose JSON does not parse stays in the text.

use serde_json::{json, Value};

use std::sync::Arc;

use crate::chat::ChatTemplate;
use crate::constrain::{self, Constraint, Guide, Vocabulary};
use crate::generate::{self, GenerateParams, Generation};
use crate::session::Session;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// A function the model may call, as OpenAI's `tools` entries describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    /// The JSON schema of the arguments (an object schema; `{}` when the tool takes none).
    pub parameters: Value,
    /// The entry as the caller gave it, which is what chat templates print.
    pub definition: Value,
}

impl Tool {
    /// A tool from an OpenAI `tools` entry: `{"type": "function", "function": {"name", …}}`.
    pub fn from_openai(entry: &Value) -> Result<Tool> {
        let bad = |why: &str| Error::InvalidArgument(format!("tools: {why}"));
        if let Some(kind) = entry.get("type") {
            if kind != "function" {
                return Err(bad(&format!("a tool of type {kind} is not supported")));
            }
        }
        let function = entry
            .get("function")
            .ok_or_else(|| bad("a tool needs a `function` object"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("a function needs a non-empty `name`"))?;
        let parameters = match function.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(other) => {
                return Err(bad(&format!(
                    "the parameters of `{name}` must be a JSON schema object, got {other}"
                )))
            }
        };
        Ok(Tool {
            name: name.to_string(),
            parameters,
            definition: entry.clone(),
        })
    }

    /// Every entry of an OpenAI `tools` array; names must differ.
    pub fn list_from_openai(tools: &[Value]) -> Result<Vec<Tool>> {
        let tools: Vec<Tool> = tools.iter().map(Tool::from_openai).collect::<Result<_>>()?;
        for (i, t) in tools.iter().enumerate() {
            if tools[..i].iter().any(|earlier| earlier.name == t.name) {
                return Err(Error::InvalidArgument(format!(
                    "tools: two functions are named `{}`",
                    t.name
                )));
            }
        }
        Ok(tools)
    }
}

/// Compiles each tool's parameter schema as a constraint would, so that a schema that cannot
/// constrain a call is an error naming its tool.
pub fn check_parameter_schemas(tools: &[Tool], vocabulary: &Arc<Vocabulary>) -> Result<()> {
    for t in tools {
        Guide::new(
            vocabulary.clone(),
            &Constraint::JsonSchema(t.parameters.clone()),
        )
        .map_err(|e| Error::InvalidArgument(format!("the parameters of tool `{}`: {e}", t.name)))?;
    }
    Ok(())
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides: a call, or a text reply.
    Auto,
    /// At least one call, of any of the tools.
    Required,
    /// A call of this function.
    Function(String),
}

/// The tools a chat request offers and what it asks of them, with the model's format.
#[derive(Debug, Clone)]
pub struct ToolUse {
    pub format: ToolFormat,
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
    /// Whether one reply may hold several calls.
    pub parallel: bool,
}

impl ToolUse {
    /// From OpenAI's request fields `tools`, `tool_choice` (`"none"`, `"auto"`, `"required"` or
    /// `{"type": "function", "function": {"name": …}}`) and `parallel_tool_calls` (off unless
    /// given, as llama-server has it), for a model with this template. `None` when the request
    /// offers no tools, or forbids calls (`"none"`: the tools are not shown to the model).
    /// Error messages begin with the field at fault.
    pub fn from_openai(
        tools: Option<&[Value]>,
        tool_choice: Option<&Value>,
        parallel_tool_calls: Option<bool>,
        template_source: &str,
    ) -> Result<Option<ToolUse>> {
        let bad_choice = |why: String| Error::InvalidArgument(format!("tool_choice: {why}"));
        let choice = match tool_choice {
            None | Some(Value::Null) => ToolChoice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "none" => return Ok(None),
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                other => {
                    return Err(bad_choice(format!(
                        "`{other}` is not none, auto or required"
                    )))
                }
            },
            Some(named) => match named.pointer("/function/name").and_then(Value::as_str) {
                Some(name) => ToolChoice::Function(name.to_string()),
                None => {
                    return Err(bad_choice(
                        "a string or {\"type\": \"function\", \"function\": {\"name\": …}}".into(),
                    ))
                }
            },
        };
        let tools = Tool::list_from_openai(tools.unwrap_or_default())?;
        if tools.is_empty() {
            return match choice {
                ToolChoice::Auto => Ok(None),
                _ => Err(bad_choice("asks for a call, but there are no tools".into())),
            };
        }
        if let ToolChoice::Function(name) = &choice {
            if !tools.iter().any(|t| &t.name == name) {
                return Err(Error::InvalidArgument(format!(
                    "tools: tool_choice names `{name}`, which is not among them"
                )));
            }
        }
        Ok(Some(ToolUse {
            format: ToolFormat::detect(template_source),
            tools,
            choice,
            parallel: parallel_tool_calls.unwrap_or(false),
        }))
    }

    /// The template variables that show the tools: `{"tools": […]}`, as the caller gave them.
    pub fn template_variables(&self) -> Value {
        let definitions: Vec<&Value> = self.tools.iter().map(|t| &t.definition).collect();
        json!({ "tools": definitions })
    }

    /// The messages as the template should see them (see [`ToolFormat::prepare_messages`]).
    pub fn messages(&self, messages: &[Value], template_source: &str) -> Vec<Value> {
        self.format
            .prepare_messages(messages, &self.tools, &self.choice, template_source)
    }

    /// The constraint of the reply, if it has one (see [`ToolFormat::constraint`]).
    pub fn constraint(&self, tokenizer: &Tokenizer) -> Result<Option<Constraint>> {
        self.format
            .constraint(&self.tools, &self.choice, self.parallel, tokenizer)
    }

    /// Adds what the tools need to `params`: the markers kept in the text, and the reply's
    /// constraint, which cannot be combined with another.
    pub fn configure(&self, params: &mut GenerateParams, tokenizer: &Tokenizer) -> Result<()> {
        params.preserved_tokens = self.format.preserved_tokens(tokenizer);
        if let Some(constraint) = self.constraint(tokenizer)? {
            if params.constraint.is_some() {
                return Err(Error::InvalidArgument(
                    "this model's tool calls are constrained output, which cannot be combined with another constraint".into(),
                ));
            }
            params.constraint = Some(constraint);
        }
        Ok(())
    }

    /// The assistant message of a whole reply in OpenAI's shape (`content` null when the reply
    /// is only calls), and whether it calls tools. Calls without an id of their own get
    /// `call_{id_stem}_{index}`.
    pub fn message(&self, text: &str, id_stem: &str) -> (Value, bool) {
        let reply = self.format.parse(text);
        let calls: Vec<Value> = reply
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, c)| c.to_openai(id_stem, i))
            .collect();
        let content = if calls.is_empty() || !reply.content.trim().is_empty() {
            Value::String(reply.content)
        } else {
            Value::Null
        };
        let mut message = json!({"role": "assistant", "content": content});
        let called = !calls.is_empty();
        if called {
            message["tool_calls"] = Value::Array(calls);
        }
        (message, called)
    }
}

/// A call the model made.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The call's id when the format carries one (Mistral's); callers make up the others.
    pub id: Option<String>,
    pub name: String,
    /// The arguments as JSON (an object, as the schemas ask).
    pub arguments: Value,
}

impl ToolCall {
    /// The call as OpenAI returns it (`arguments` as a JSON string); a call without an id of
    /// its own gets `call_{id_stem}_{index}`.
    pub fn to_openai(&self, id_stem: &str, index: usize) -> Value {
        let id = self
            .id
            .clone()
            .unwrap_or_else(|| format!("call_{id_stem}_{index}"));
        json!({
            "id": id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments.to_string()},
        })
    }
}

/// A reply split into its text and its calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    /// Everything that is not a call.
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
}

/// How a model family writes tool calls (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    Hermes,
    Llama3,
    MistralJson,
    MistralArgs,
    TaggedList,
    Generic,
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";
const MISTRAL_CALLS: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";
const MISTRAL_CALL_ID: &str = "[CALL_ID]";
const TAGGED_OPEN: &str = "<|tool_call|>";
const TAGGED_CLOSE: &str = "<|/tool_call|>";
const JSON_FENCE: &str = "```json";

impl ToolFormat {
    /// The format a chat template shows its model, from the markers it writes.
    pub fn detect(template_source: &str) -> ToolFormat {
        let has = |s: &str| template_source.contains(s);
        if has(MISTRAL_CALLS) {
            if has(MISTRAL_ARGS) {
                ToolFormat::MistralArgs
            } else {
                ToolFormat::MistralJson
            }
        } else if has(HERMES_OPEN) {
            ToolFormat::Hermes
        } else if has(TAGGED_OPEN) {
            ToolFormat::TaggedList
        } else if has("<|start_header_id|>ipython")
            || (has("<|start_header_id|>") && has(PYTHON_TAG))
        {
            ToolFormat::Llama3
        } else {
            ToolFormat::Generic
        }
    }

    /// Marker texts the format's calls contain, which must be kept in the generated text even
    /// when the vocabulary has them as control tokens.
    pub fn markers(self) -> &'static [&'static str] {
        match self {
            ToolFormat::Hermes => &[HERMES_OPEN, HERMES_CLOSE],
            ToolFormat::Llama3 => &[PYTHON_TAG],
            ToolFormat::MistralJson => &[MISTRAL_CALLS],
            ToolFormat::MistralArgs => &[MISTRAL_CALLS, MISTRAL_ARGS, MISTRAL_CALL_ID],
            ToolFormat::TaggedList => &[TAGGED_OPEN, TAGGED_CLOSE],
            ToolFormat::Generic => &[],
        }
    }

    /// The control tokens among [`ToolFormat::markers`], for
    /// [`GenerateParams::preserved_tokens`](crate::generate::GenerateParams::preserved_tokens).
    pub fn preserved_tokens(self, tokenizer: &Tokenizer) -> Vec<u32> {
        self.markers()
            .iter()
            .filter_map(|m| tokenizer.token_id(m))
            .filter(|&id| tokenizer.is_control(id))
            .collect()
    }

    /// The conversation as the template should see it: tool calls' `arguments` as JSON objects
    /// (OpenAI sends them as strings; templates print them with `tojson`), and for the generic
    /// format the tools described in the system message, earlier calls written as the JSON the
    /// model is asked for, and tool results as messages of a role the template knows.
    pub fn prepare_messages(
        self,
        messages: &[Value],
        tools: &[Tool],
        choice: &ToolChoice,
        template_source: &str,
    ) -> Vec<Value> {
        let mut out: Vec<Value> = messages.iter().map(with_parsed_arguments).collect();
        if self != ToolFormat::Generic {
            return out;
        }
        let template_knows_tool_role = template_source.contains("tool");
        for m in &mut out {
            let Some(object) = m.as_object_mut() else {
                continue;
            };
            if let Some(calls) = object.remove("tool_calls") {
                let calls: Vec<Value> = calls
                    .as_array()
                    .map(|calls| calls.iter().map(generic_call).collect())
                    .unwrap_or_default();
                object.insert(
                    "content".into(),
                    Value::String(json!({ "tool_calls": calls }).to_string()),
                );
            }
            if object.get("role").and_then(Value::as_str) == Some("tool")
                && !template_knows_tool_role
            {
                let content = object.get("content").cloned().unwrap_or(Value::Null);
                let id = object.get("tool_call_id").cloned().unwrap_or(Value::Null);
                object.insert("role".into(), Value::String("user".into()));
                object.insert(
                    "content".into(),
                    Value::String(
                        json!({"tool_response": {"tool_call_id": id, "content": content}})
                            .to_string(),
                    ),
                );
            }
        }
        let instructions = generic_instructions(tools, choice);
        match out.first_mut() {
            Some(first) if first.get("role").and_then(Value::as_str) == Some("system") => {
                let content = first.get("content").and_then(Value::as_str).unwrap_or("");
                let merged = if content.is_empty() {
                    instructions
                } else {
                    format!("{content}\n\n{instructions}")
                };
                first["content"] = Value::String(merged);
            }
            _ => out.insert(0, json!({"role": "system", "content": instructions})),
        }
        out
    }

    /// What the reply must match: for a required call, the format's markers around JSON valid
    /// under the tool's schema; for the generic format always its JSON reply. `None` when the
    /// model writes freely. Tools that `choice` names must exist; `parallel` allows several
    /// calls in one reply.
    pub fn constraint(
        self,
        tools: &[Tool],
        choice: &ToolChoice,
        parallel: bool,
        tokenizer: &Tokenizer,
    ) -> Result<Option<Constraint>> {
        let offered: Vec<&Tool> = match choice {
            ToolChoice::Function(name) => {
                let tool = tools.iter().find(|t| &t.name == name).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "tool_choice names `{name}`, which is not among the tools"
                    ))
                })?;
                vec![tool]
            }
            ToolChoice::Auto | ToolChoice::Required => tools.iter().collect(),
        };
        if offered.is_empty() {
            return match choice {
                ToolChoice::Auto => Ok(None),
                _ => Err(Error::InvalidArgument(
                    "tool_choice requires a call, but no tools were given".into(),
                )),
            };
        }
        let required = *choice != ToolChoice::Auto;
        if !required && self != ToolFormat::Generic {
            return Ok(None);
        }
        let marker = |text: &str| lark_marker(tokenizer, text);
        let call = |arguments_key: &str, extra: Option<(&str, Value)>| {
            let variants: Vec<Value> = offered
                .iter()
                .map(|t| call_schema(t, arguments_key, extra.clone()))
                .collect();
            one_of(variants)
        };
        let list = |item: Value| {
            let mut list = json!({"type": "array", "items": item, "minItems": 1});
            if !parallel {
                list["maxItems"] = json!(1);
            }
            list
        };
        let lark = match self {
            ToolFormat::Hermes => {
                let repeat = if parallel { " (\"\\n\" call)*" } else { "" };
                format!(
                    "start: call{repeat}\ncall: {} \"\\n\" {} \"\\n\" {}\n",
                    marker(HERMES_OPEN),
                    lark_json(&call("arguments", None)),
                    marker(HERMES_CLOSE),
                )
            }
            ToolFormat::Llama3 => format!("start: {}\n", lark_json(&call("parameters", None))),
            ToolFormat::MistralJson => {
                let id = (
                    "id",
                    json!({"type": "string", "pattern": "^[a-zA-Z0-9]{9}$"}),
                );
                format!(
                    "start: {} {}\n",
                    marker(MISTRAL_CALLS),
                    lark_json(&list(call("arguments", Some(id))))
                )
            }
            ToolFormat::MistralArgs => {
                let repeat = if parallel { "+" } else { "" };
                let bodies: Vec<String> = offered
                    .iter()
                    .map(|t| {
                        format!(
                            "{} {} {}",
                            lark_string(&t.name),
                            marker(MISTRAL_ARGS),
                            lark_json(&t.parameters)
                        )
                    })
                    .collect();
                format!(
                    "start: call{repeat}\ncall: {} ({})\n",
                    marker(MISTRAL_CALLS),
                    bodies.join(" | ")
                )
            }
            ToolFormat::TaggedList => format!(
                "start: {} {}\n",
                marker(TAGGED_OPEN),
                lark_json(&list(call("arguments", None)))
            ),
            ToolFormat::Generic => {
                let calls = json!({
                    "type": "object",
                    "properties": {"tool_calls": list(call("arguments", None))},
                    "required": ["tool_calls"],
                    "additionalProperties": false,
                });
                let schema = if required {
                    calls
                } else {
                    let response = json!({
                        "type": "object",
                        "properties": {"response": {"type": "string"}},
                        "required": ["response"],
                        "additionalProperties": false,
                    });
                    json!({"anyOf": [calls, response]})
                };
                format!("start: {}\n", lark_json(&schema))
            }
        };
        Ok(Some(Constraint::Lark(lark)))
    }

    /// The reply's calls and the text around them.
    pub fn parse(self, text: &str) -> Reply {
        match self {
            ToolFormat::Hermes => parse_hermes(text),
            ToolFormat::Llama3 => parse_llama3(text),
            ToolFormat::MistralJson => parse_after_marker(text, MISTRAL_CALLS, parse_json_list),
            ToolFormat::MistralArgs => parse_after_marker(text, MISTRAL_CALLS, parse_mistral_args),
            ToolFormat::TaggedList => parse_after_marker(text, TAGGED_OPEN, |rest| {
                let rest = rest.trim_end();
                parse_json_list(rest.strip_suffix(TAGGED_CLOSE).unwrap_or(rest))
            }),
            ToolFormat::Generic => parse_generic(text),
        }
    }

    /// The marker that opens calls anywhere in the text; `None` for formats whose calls can
    /// only open the reply.
    fn opening_marker(self) -> Option<&'static str> {
        match self {
            ToolFormat::Hermes => Some(HERMES_OPEN),
            ToolFormat::MistralJson | ToolFormat::MistralArgs => Some(MISTRAL_CALLS),
            ToolFormat::TaggedList => Some(TAGGED_OPEN),
            ToolFormat::Llama3 | ToolFormat::Generic => None,
        }
    }
}

/// A message with each of its tool calls' `arguments` string replaced by the JSON it holds:
/// OpenAI sends arguments as a string, chat templates print them with `tojson`. Every
/// conversation with earlier calls needs this, whether or not the request offers tools.
pub fn with_parsed_arguments(message: &Value) -> Value {
    let mut message = message.clone();
    if let Some(calls) = message.get_mut("tool_calls").and_then(Value::as_array_mut) {
        for call in calls {
            let arguments = match call.get_mut("function") {
                Some(f) => f.get_mut("arguments"),
                None => call.get_mut("arguments"),
            };
            if let Some(arguments) = arguments {
                if let Some(parsed) = arguments
                    .as_str()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
                {
                    *arguments = parsed;
                }
            }
        }
    }
    message
}

/// An OpenAI tool call as the generic format writes it: `{"name", "arguments"}`.
fn generic_call(call: &Value) -> Value {
    let function = call.get("function").unwrap_or(call);
    json!({
        "name": function.get("name").cloned().unwrap_or(Value::Null),
        "arguments": function.get("arguments").cloned().unwrap_or(json!({})),
    })
}

/// The system-message text that teaches the generic format.
fn generic_instructions(tools: &[Tool], choice: &ToolChoice) -> String {
    let mut text = String::from("You can use the following tools:\n");
    for t in tools {
        text.push_str(&t.definition.to_string());
        text.push('\n');
    }
    text.push_str(
        "\nTo call tools, reply with only a JSON object of the form \
         {\"tool_calls\": [{\"name\": <tool name>, \"arguments\": <arguments object>}]}.",
    );
    if *choice == ToolChoice::Auto {
        text.push_str(
            " To answer without a tool, reply with only {\"response\": <your answer as a string>}.",
        );
    }
    text
}

/// The schema of one call of `tool`: its name, its arguments under `arguments_key`, and an
/// extra property if the format has one, in that order and nothing else.
fn call_schema(tool: &Tool, arguments_key: &str, extra: Option<(&str, Value)>) -> Value {
    let mut properties = serde_json::Map::new();
    properties.insert("name".into(), json!({"const": tool.name}));
    properties.insert(arguments_key.into(), tool.parameters.clone());
    let mut required = vec![json!("name"), json!(arguments_key)];
    if let Some((key, schema)) = extra {
        properties.insert(key.into(), schema);
        required.push(json!(key));
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn one_of(mut variants: Vec<Value>) -> Value {
    if variants.len() == 1 {
        variants.remove(0)
    } else {
        json!({ "anyOf": variants })
    }
}

/// A `%json` element of a Lark grammar, its whitespace bounded as every schema constraint's is.
fn lark_json(schema: &Value) -> String {
    format!("%json {}", constrain::with_bounded_whitespace(schema))
}

/// A Lark string literal of `text` (JSON's string syntax is Lark's).
fn lark_string(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// A marker in a Lark grammar: the control token itself when the vocabulary has one of that
/// text (grammar text cannot spell a control token), else the literal text.
fn lark_marker(tokenizer: &Tokenizer, text: &str) -> String {
    match tokenizer.token_id(text) {
        Some(id) if tokenizer.is_control(id) => format!("<[{id}]>"),
        _ => lark_string(text),
    }
}

/// A call from a JSON object with a `name` and its arguments under `arguments` or
/// `parameters` (an object, or a string holding one).
fn call_from_json(value: &Value) -> Option<ToolCall> {
    let name = value.get("name")?.as_str()?.to_string();
    let arguments = value
        .get("arguments")
        .or_else(|| value.get("parameters"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let arguments = match arguments {
        Value::String(s) => serde_json::from_str(&s).ok()?,
        other => other,
    };
    if !arguments.is_object() {
        return None;
    }
    let id = value.get("id").and_then(Value::as_str).map(str::to_string);
    Some(ToolCall {
        id,
        name,
        arguments,
    })
}

/// The first JSON value of `text` and the text after it.
fn leading_json(text: &str) -> Option<(Value, &str)> {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let value = values.next()?.ok()?;
    Some((value, &text[values.byte_offset()..]))
}

fn parse_hermes(text: &str) -> Reply {
    // Small models often leave the tags out and write just the JSON of the call.
    if !text.contains(HERMES_OPEN) {
        if let Some(calls) = whole_calls(text) {
            return Reply {
                content: String::new(),
                tool_calls: calls,
            };
        }
    }
    let mut reply = Reply::default();
    let mut rest = text;
    while let Some(start) = rest.find(HERMES_OPEN) {
        reply.content.push_str(&rest[..start]);
        let body_start = start + HERMES_OPEN.len();
        let (body_end, next) = match rest[body_start..].find(HERMES_CLOSE) {
            Some(end) => (body_start + end, body_start + end + HERMES_CLOSE.len()),
            None => (rest.len(), rest.len()),
        };
        let call = serde_json::from_str::<Value>(rest[body_start..body_end].trim())
            .ok()
            .and_then(|v| call_from_json(&v));
        match call {
            Some(call) => reply.tool_calls.push(call),
            None => reply.content.push_str(&rest[start..next]),
        }
        rest = &rest[next..];
    }
    reply.content.push_str(rest);
    reply
}

fn parse_llama3(text: &str) -> Reply {
    let trimmed = text.trim_start();
    match whole_calls(trimmed.strip_prefix(PYTHON_TAG).unwrap_or(trimmed)) {
        Some(calls) => Reply {
            content: String::new(),
            tool_calls: calls,
        },
        None => Reply {
            content: text.to_string(),
            tool_calls: Vec::new(),
        },
    }
}

/// The calls `text` consists of: JSON call objects, separated by whitespace or `;` (as Llama
/// 3.x sometimes writes several), maybe in a Markdown JSON code fence; `None` when anything else is
/// there.
fn whole_calls(text: &str) -> Option<Vec<ToolCall>> {
    let mut rest = text.trim();
    if let Some(fenced) = rest.strip_prefix(JSON_FENCE) {
        rest = fenced.strip_suffix("```")?.trim();
    }
    let mut calls = Vec::new();
    while !rest.is_empty() {
        let (value, after) = leading_json(rest)?;
        calls.push(call_from_json(&value)?);
        rest = after.trim_start();
        rest = rest.strip_prefix(';').unwrap_or(rest).trim_start();
    }
    (!calls.is_empty()).then_some(calls)
}

/// Text up to the first `marker` is content; what follows is calls as `parse_calls` reads them,
/// or content too when it cannot.
fn parse_after_marker(
    text: &str,
    marker: &str,
    parse_calls: impl Fn(&str) -> Option<Vec<ToolCall>>,
) -> Reply {
    let Some(start) = text.find(marker) else {
        return Reply {
            content: text.to_string(),
            tool_calls: Vec::new(),
        };
    };
    match parse_calls(&text[start + marker.len()..]) {
        Some(calls) => Reply {
            content: text[..start].to_string(),
            tool_calls: calls,
        },
        None => Reply {
            content: text.to_string(),
            tool_calls: Vec::new(),
        },
    }
}

/// A JSON array of calls.
fn parse_json_list(text: &str) -> Option<Vec<ToolCall>> {
    let (value, rest) = leading_json(text.trim_start())?;
    if !rest.trim().is_empty() {
        return None;
    }
    value.as_array()?.iter().map(call_from_json).collect()
}

/// `name[ARGS]{…}` (or `name[CALL_ID]id[ARGS]{…}`), repeated with `[TOOL_CALLS]` between.
fn parse_mistral_args(text: &str) -> Option<Vec<ToolCall>> {
    let mut calls = Vec::new();
    let mut rest = text;
    loop {
        let args_at = rest.find(MISTRAL_ARGS)?;
        let (name, id) = match rest[..args_at].split_once(MISTRAL_CALL_ID) {
            Some((name, id)) => (name, Some(id.trim().to_string())),
            None => (&rest[..args_at], None),
        };
        let (arguments, after) = leading_json(&rest[args_at + MISTRAL_ARGS.len()..])?;
        if !arguments.is_object() || name.trim().is_empty() {
            return None;
        }
        calls.push(ToolCall {
            id,
            name: name.trim().to_string(),
            arguments,
        });
        let after = after.trim_start();
        if after.is_empty() {
            return Some(calls);
        }
        rest = after.strip_prefix(MISTRAL_CALLS)?;
    }
}

fn parse_generic(text: &str) -> Reply {
    let parsed = serde_json::from_str::<Value>(text.trim()).ok();
    if let Some(value) = &parsed {
        if let Some(calls) = value.get("tool_calls").and_then(Value::as_array) {
            if let Some(calls) = calls.iter().map(call_from_json).collect::<Option<Vec<_>>>() {
                return Reply {
                    content: String::new(),
                    tool_calls: calls,
                };
            }
        }
        if let Some(call) = value.get("tool_call").and_then(call_from_json) {
            return Reply {
                content: String::new(),
                tool_calls: vec![call],
            };
        }
        match value.get("response") {
            Some(Value::String(s)) => {
                return Reply {
                    content: s.clone(),
                    tool_calls: Vec::new(),
                }
            }
            Some(other) if value.as_object().is_some_and(|o| o.len() == 1) => {
                return Reply {
                    content: other.to_string(),
                    tool_calls: Vec::new(),
                }
            }
            _ => {}
        }
    }
    Reply {
        content: text.to_string(),
        tool_calls: Vec::new(),
    }
}

/// Replies in `session` to a chat request in OpenAI's shape: `{"messages": […], "tools": […],
/// "tool_choice": …, "parallel_tool_calls": …}` (all but `messages` optional; message content a
/// string or null). Returns the generation and the reply as an OpenAI assistant message, its
/// calls parsed out; `on_content` gets the reply's text as it is generated, without the calls.
/// Call ids without one of the model's are `call_{number of request messages}_{index}`, so they
/// differ from turn to turn of a conversation.
pub fn reply_to_request(
    session: &mut Session,
    template: &ChatTemplate,
    request: &Value,
    params: &GenerateParams,
    on_content: &mut dyn FnMut(&str) -> bool,
) -> Result<(Generation, Value)> {
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| Error::InvalidArgument("messages: a non-empty array is needed".into()))?;
    for (i, m) in messages.iter().enumerate() {
        let role_ok = m.get("role").is_some_and(Value::is_string);
        let content_ok = matches!(
            m.get("content"),
            None | Some(Value::Null | Value::String(_))
        );
        if !role_ok || !content_ok {
            return Err(Error::InvalidArgument(format!(
                "messages[{i}]: a message needs a string `role` and a string or null `content`"
            )));
        }
    }
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut m = with_parsed_arguments(m);
            if m.get("content").is_none_or(Value::is_null) {
                m["content"] = Value::String(String::new());
            }
            m
        })
        .collect();
    let tool_use = ToolUse::from_openai(
        request
            .get("tools")
            .and_then(Value::as_array)
            .map(Vec::as_slice),
        request.get("tool_choice"),
        request.get("parallel_tool_calls").and_then(Value::as_bool),
        template.source(),
    )?;
    let model = session.model().clone();
    let mut params = params.clone();
    let (messages, variables) = match &tool_use {
        Some(t) => {
            t.configure(&mut params, model.tokenizer())?;
            (
                t.messages(&messages, template.source()),
                t.template_variables(),
            )
        }
        None => (messages, Value::Null),
    };
    let prompt = generate::chat_prompt_with(&model, template, &messages, &variables)?;
    let Some(tool_use) = tool_use else {
        let generation = generate::generate_tokens(session, &prompt, &params, on_content)?;
        let message = json!({"role": "assistant", "content": generation.text});
        return Ok((generation, message));
    };
    let mut stream = ReplyStream::new(tool_use.format);
    let mut on_piece = |piece: &str| {
        stream.push(piece).iter().all(|d| match d {
            ReplyDelta::Content(text) => on_content(text),
            ReplyDelta::Call(_) => true,
        })
    };
    let generation = generate::generate_tokens(session, &prompt, &params, &mut on_piece)?;
    for d in stream.finish() {
        if let ReplyDelta::Content(text) = d {
            // The reply is complete; a false return has nothing left to stop.
            let _ = on_content(&text);
        }
    }
    let (message, _) = tool_use.message(&generation.text, &messages_count_stem(request));
    Ok((generation, message))
}

fn messages_count_stem(request: &Value) -> String {
    request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
        .to_string()
}

/// What a [`ReplyStream`] lets out.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyDelta {
    /// Text of the reply that is certainly not part of a call.
    Content(String),
    /// A complete call.
    Call(ToolCall),
}

/// [`ToolFormat::parse`] for a reply that arrives piece by piece: text is let out as soon as
/// it cannot be the start of a call, and each call once it is complete. The deltas add up to
/// what `parse` finds in the whole text.
#[derive(Debug)]
pub struct ReplyStream {
    format: ToolFormat,
    text: String,
    /// Bytes of `text` let out as content.
    released: usize,
    state: StreamState,
    /// Calls let out so far (Hermes calls are let out as each one closes).
    calls_released: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    /// The reply has not yet shown whether it opens with a call written as bare JSON.
    Undecided,
    /// Text in which a call's opening marker may still come.
    Text,
    /// Text that holds no call: all of it is content.
    Plain,
    /// Calls began at this byte of the text.
    Calls(usize),
}

impl ReplyStream {
    pub fn new(format: ToolFormat) -> ReplyStream {
        let state = match format {
            ToolFormat::Generic => StreamState::Calls(0),
            // Calls written as bare JSON can only open the reply.
            ToolFormat::Llama3 | ToolFormat::Hermes => StreamState::Undecided,
            _ => StreamState::Text,
        };
        ReplyStream {
            format,
            text: String::new(),
            released: 0,
            state,
            calls_released: 0,
        }
    }

    /// Adds `piece` of the reply; returns what is now certain.
    pub fn push(&mut self, piece: &str) -> Vec<ReplyDelta> {
        self.text.push_str(piece);
        let mut out = Vec::new();
        loop {
            match self.state {
                StreamState::Undecided => {
                    let start = self.text.trim_start();
                    let python_tag = self.format == ToolFormat::Llama3;
                    let opens = |prefix: &str| start.starts_with(prefix);
                    let may_open = |prefix: &str| prefix.starts_with(start);
                    if opens("{") || opens(JSON_FENCE) || (python_tag && opens(PYTHON_TAG)) {
                        self.state = StreamState::Calls(0);
                    } else if !(start.is_empty()
                        || may_open(JSON_FENCE)
                        || (python_tag && may_open(PYTHON_TAG)))
                    {
                        self.state = match self.format.opening_marker() {
                            Some(_) => StreamState::Text,
                            None => StreamState::Plain,
                        };
                        continue;
                    }
                }
                StreamState::Plain => self.release_to(self.text.len(), &mut out),
                StreamState::Text => {
                    let marker = self.format.opening_marker().unwrap_or(HERMES_OPEN);
                    let pending = &self.text[self.released..];
                    match pending.find(marker) {
                        Some(at) => {
                            self.release_to(self.released + at, &mut out);
                            self.state = StreamState::Calls(self.released);
                        }
                        None => {
                            let keep = partial_suffix(pending, marker);
                            self.release_to(self.text.len() - keep, &mut out);
                        }
                    }
                }
                StreamState::Calls(_) => {}
            }
            break;
        }
        if let (StreamState::Calls(from), ToolFormat::Hermes) = (self.state, self.format) {
            // Each call closed so far; text after the last close waits, more calls may follow.
            let region = &self.text[from..];
            if let Some(last_close) = region.rfind(HERMES_CLOSE) {
                let closed = parse_hermes(&region[..last_close + HERMES_CLOSE.len()]);
                for call in closed.tool_calls.into_iter().skip(self.calls_released) {
                    self.calls_released += 1;
                    out.push(ReplyDelta::Call(call));
                }
            }
        }
        out
    }

    /// Ends the reply: the calls not yet let out and the rest of the content.
    pub fn finish(mut self) -> Vec<ReplyDelta> {
        let mut out = Vec::new();
        match self.state {
            StreamState::Calls(from) => {
                let reply = self.format.parse(&self.text[from..]);
                if !reply.content.is_empty() {
                    out.push(ReplyDelta::Content(reply.content));
                }
                for call in reply.tool_calls.into_iter().skip(self.calls_released) {
                    out.push(ReplyDelta::Call(call));
                }
            }
            _ => self.release_to(self.text.len(), &mut out),
        }
        out
    }

    fn release_to(&mut self, end: usize, out: &mut Vec<ReplyDelta>) {
        if end > self.released {
            out.push(ReplyDelta::Content(
                self.text[self.released..end].to_string(),
            ));
            self.released = end;
        }
    }
}

/// The length of the longest end of `text` that is a proper start of `marker`.
fn partial_suffix(text: &str, marker: &str) -> usize {
    (1..marker.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && marker.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: Value) -> ToolCall {
        ToolCall {
            id: None,
            name: name.into(),
            arguments,
        }
    }

    /// Every split of `text` into two pieces, and one piece per character, streams to the
    /// content and calls that parsing the whole text finds.
    fn assert_stream_matches_parse(format: ToolFormat, text: &str) {
        let whole = format.parse(text);
        let mut splits: Vec<Vec<&str>> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .map(|i| vec![&text[..i], &text[i..]])
            .collect();
        splits.push(
            text.char_indices()
                .map(|(i, c)| &text[i..i + c.len_utf8()])
                .collect(),
        );
        for pieces in splits {
            let mut stream = ReplyStream::new(format);
            let mut deltas = Vec::new();
            for p in &pieces {
                deltas.extend(stream.push(p));
            }
            deltas.extend(stream.finish());
            let mut streamed = Reply::default();
            for d in deltas {
                match d {
                    ReplyDelta::Content(c) => streamed.content.push_str(&c),
                    ReplyDelta::Call(c) => streamed.tool_calls.push(c),
                }
            }
            assert_eq!(streamed, whole, "{format:?} {pieces:?}");
        }
    }

    #[test]
    fn detects_each_family_from_its_template_markers() {
        let cases = [
            ("{{- '<tool_call>\\n' }}", ToolFormat::Hermes),
            (
                "<|start_header_id|>ipython<|end_header_id|>",
                ToolFormat::Llama3,
            ),
            (
                "<|start_header_id|>{{ role }} {{ '<|python_tag|>' }}",
                ToolFormat::Llama3,
            ),
            (
                "[AVAILABLE_TOOLS]{{ tools }}[TOOL_CALLS]{{ calls|tojson }}",
                ToolFormat::MistralJson,
            ),
            (
                "[TOOL_CALLS]{{ name }}[ARGS]{{ args }}",
                ToolFormat::MistralArgs,
            ),
            (
                "<|start_of_role|>assistant<|end_of_role|><|tool_call|>",
                ToolFormat::TaggedList,
            ),
            ("{{ '<start_of_turn>' + role }}", ToolFormat::Generic),
        ];
        for (source, format) in cases {
            assert_eq!(ToolFormat::detect(source), format, "{source}");
        }
    }

    #[test]
    fn parses_hermes_calls_around_text() {
        let text = "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": \"{}\"}\n</tool_call>";
        let reply = ToolFormat::Hermes.parse(text);
        assert_eq!(
            reply.tool_calls,
            vec![
                call("get_weather", json!({"city": "Paris"})),
                call("now", json!({}))
            ]
        );
        assert_eq!(reply.content, "Let me look.\n\n");
        assert_stream_matches_parse(ToolFormat::Hermes, text);
    }

    #[test]
    fn a_call_that_does_not_parse_stays_text() {
        let text = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": </tool_call> done";
        let reply = ToolFormat::Hermes.parse(text);
        assert!(reply.tool_calls.is_empty());
        assert_eq!(reply.content, text);
        assert_stream_matches_parse(ToolFormat::Hermes, text);
        // A reply cut off inside a call (max tokens) is text too.
        let cut = "Sure <tool_call>\n{\"name\": \"f\", \"argu";
        assert_eq!(ToolFormat::Hermes.parse(cut).content, cut);
        assert_stream_matches_parse(ToolFormat::Hermes, cut);
        // Tags left out: a reply that is just the JSON of calls, maybe fenced.
        let bare = "```json\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n```";
        assert_eq!(
            ToolFormat::Hermes.parse(bare).tool_calls,
            vec![call("f", json!({"x": 1}))]
        );
        assert_stream_matches_parse(ToolFormat::Hermes, bare);
        assert_stream_matches_parse(ToolFormat::Hermes, "{\"name\": \"f\", \"arguments\": {}}");
        assert_stream_matches_parse(ToolFormat::Hermes, " {\"answer\": 42} <tool_call>{}");
        // A close tag is optional at the very end.
        let unclosed = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}";
        assert_eq!(
            ToolFormat::Hermes.parse(unclosed).tool_calls,
            vec![call("f", json!({}))]
        );
    }

    #[test]
    fn parses_llama3_calls_only_at_the_start() {
        let text = "<|python_tag|>{\"name\": \"search\", \"parameters\": {\"q\": \"rust\"}}; {\"type\": \"function\", \"name\": \"now\", \"parameters\": {}}";
        assert_eq!(
            ToolFormat::Llama3.parse(text).tool_calls,
            vec![call("search", json!({"q": "rust"})), call("now", json!({}))]
        );
        assert_stream_matches_parse(ToolFormat::Llama3, text);
        let prose = "The answer is {\"name\": \"x\", \"parameters\": {}}";
        assert_eq!(ToolFormat::Llama3.parse(prose).content, prose);
        assert_stream_matches_parse(ToolFormat::Llama3, prose);
        let json_answer = "{\"temperature\": 21}";
        assert_eq!(ToolFormat::Llama3.parse(json_answer).content, json_answer);
        assert_stream_matches_parse(ToolFormat::Llama3, json_answer);
    }

    #[test]
    fn parses_mistral_calls_in_both_generations() {
        let nemo = "[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}, \"id\": \"abc123XYZ\"}]";
        let reply = ToolFormat::MistralJson.parse(nemo);
        assert_eq!(reply.tool_calls.len(), 1);
        assert_eq!(reply.tool_calls[0].id.as_deref(), Some("abc123XYZ"));
        assert_eq!(reply.tool_calls[0].arguments, json!({"a": 1, "b": 2}));
        assert_stream_matches_parse(ToolFormat::MistralJson, nemo);

        let args = "I will add.[TOOL_CALLS]add[ARGS]{\"a\": 1}[TOOL_CALLS]now[CALL_ID]k2[ARGS]{}";
        let reply = ToolFormat::MistralArgs.parse(args);
        assert_eq!(reply.content, "I will add.");
        assert_eq!(reply.tool_calls[0], call("add", json!({"a": 1})));
        assert_eq!(reply.tool_calls[1].id.as_deref(), Some("k2"));
        assert_stream_matches_parse(ToolFormat::MistralArgs, args);
    }

    #[test]
    fn parses_tagged_lists_and_generic_json() {
        let tagged = "<|tool_call|>[{\"name\": \"f\", \"arguments\": {\"n\": 3}}]<|/tool_call|>";
        assert_eq!(
            ToolFormat::TaggedList.parse(tagged).tool_calls,
            vec![call("f", json!({"n": 3}))]
        );
        assert_stream_matches_parse(ToolFormat::TaggedList, tagged);

        let calls = "{\"tool_calls\": [{\"name\": \"f\", \"arguments\": {\"n\": 3}}]}";
        assert_eq!(
            ToolFormat::Generic.parse(calls).tool_calls,
            vec![call("f", json!({"n": 3}))]
        );
        let answer = "{\"response\": \"It is sunny.\"}";
        let reply = ToolFormat::Generic.parse(answer);
        assert_eq!(
            (reply.content.as_str(), reply.tool_calls.len()),
            ("It is sunny.", 0)
        );
        assert_stream_matches_parse(ToolFormat::Generic, calls);
        assert_stream_matches_parse(ToolFormat::Generic, answer);
    }

    #[test]
    fn streamed_text_is_held_only_while_it_may_open_a_call() {
        let mut stream = ReplyStream::new(ToolFormat::Hermes);
        assert_eq!(
            stream.push("Hi <tool"),
            vec![ReplyDelta::Content("Hi ".into())]
        );
        assert_eq!(
            stream.push("box>"),
            vec![ReplyDelta::Content("<toolbox>".into())]
        );
        assert!(stream
            .push("<tool_call>{\"name\": \"f\", \"arguments\": {}}")
            .is_empty());
        assert_eq!(
            stream.push("</tool_call>"),
            vec![ReplyDelta::Call(call("f", json!({})))]
        );
        assert!(stream.finish().is_empty());
    }

    #[test]
    fn tools_are_checked() {
        let ok = json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}});
        assert_eq!(Tool::from_openai(&ok).unwrap().name, "f");
        let no_params = json!({"type": "function", "function": {"name": "g"}});
        assert_eq!(
            Tool::from_openai(&no_params).unwrap().parameters,
            json!({"type": "object", "properties": {}})
        );
        for bad in [
            json!({"type": "retrieval"}),
            json!({"type": "function"}),
            json!({"type": "function", "function": {"name": ""}}),
            json!({"type": "function", "function": {"name": "f", "parameters": [1]}}),
        ] {
            assert!(Tool::from_openai(&bad).is_err(), "{bad}");
        }
        assert!(Tool::list_from_openai(&[ok.clone(), ok]).is_err());
    }

    #[test]
    fn template_messages_get_arguments_as_objects() {
        let messages = [json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "c0", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}
        ]})];
        let prepared = ToolFormat::Hermes.prepare_messages(&messages, &[], &ToolChoice::Auto, "");
        assert_eq!(
            prepared[0]["tool_calls"][0]["function"]["arguments"],
            json!({"x": 1})
        );
        let tool =
            Tool::from_openai(&json!({"type": "function", "function": {"name": "f"}})).unwrap();
        let generic = ToolFormat::Generic.prepare_messages(
            &[json!({"role": "user", "content": "hi"})],
            &[tool],
            &ToolChoice::Auto,
            "",
        );
        assert_eq!(generic[0]["role"], "system");
        assert!(generic[0]["content"]
            .as_str()
            .unwrap()
            .contains("\"name\":\"f\""));
        assert_eq!(generic[1]["content"], "hi");
    }
}
