//! Tool calls on the chat endpoint: OpenAI's `tools`, `tool_choice` and `parallel_tool_calls`
//! in, `tool_calls` out (whole, or streamed as deltas, one per complete call).

use llmrt::chat::ChatTemplate;
use llmrt::generate::GenerateParams;
use std::sync::Arc;

use llmrt::tools::{self, ReplyDelta, ReplyStream, Tool, ToolCall, ToolChoice, ToolFormat};
use llmrt::Model;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;

/// The tool fields of a chat request.
#[derive(Deserialize, Default)]
pub(crate) struct ToolFields {
    tools: Option<Vec<Value>>,
    /// `"none"`, `"auto"`, `"required"` or `{"type": "function", "function": {"name": …}}`.
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
}

/// Tools offered to one request, and how the model's reply is read.
pub(crate) struct ToolUse {
    format: ToolFormat,
    tools: Vec<Tool>,
    choice: ToolChoice,
    parallel: bool,
}

impl ToolFields {
    /// What the request asks of the tools; `None` when it offers none, or forbids calls
    /// (`tool_choice: "none"`: the tools are not shown to the model).
    pub(crate) fn tool_use(&self, template: &ChatTemplate) -> Result<Option<ToolUse>, ApiError> {
        let choice = match &self.tool_choice {
            None => ToolChoice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "none" => return Ok(None),
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                other => {
                    return Err(ApiError::invalid_param(
                        "tool_choice",
                        format!("tool_choice `{other}` is not none, auto or required"),
                    ))
                }
            },
            Some(named) => match named.pointer("/function/name").and_then(Value::as_str) {
                Some(name) => ToolChoice::Function(name.to_string()),
                None => {
                    return Err(ApiError::invalid_param(
                        "tool_choice",
                        "tool_choice must be a string or {\"type\": \"function\", \"function\": {\"name\": …}}",
                    ))
                }
            },
        };
        let tools = match &self.tools {
            Some(entries) => Tool::list_from_openai(entries)
                .map_err(|e| ApiError::invalid_param("tools", e.to_string()))?,
            None => Vec::new(),
        };
        if tools.is_empty() {
            return match choice {
                ToolChoice::Auto => Ok(None),
                _ => Err(ApiError::invalid_param(
                    "tool_choice",
                    "tool_choice asks for a call, but the request has no tools",
                )),
            };
        }
        Ok(Some(ToolUse {
            format: ToolFormat::detect(template.source()),
            tools,
            choice,
            // As llama-server: one call per reply unless asked for more.
            parallel: self.parallel_tool_calls.unwrap_or(false),
        }))
    }
}

impl ToolUse {
    /// The template variables that show the tools: `{"tools": […]}`, as the caller gave them.
    pub(crate) fn template_variables(&self) -> Value {
        let definitions: Vec<&Value> = self.tools.iter().map(|t| &t.definition).collect();
        json!({ "tools": definitions })
    }

    /// The messages as the template should see them (see [`ToolFormat::prepare_messages`]).
    pub(crate) fn messages(&self, messages: &[Value], template: &ChatTemplate) -> Vec<Value> {
        self.format
            .prepare_messages(messages, &self.tools, &self.choice, template.source())
    }

    /// Adds what the tools need to `params`: the markers kept in the text, and the constraint
    /// of a required call (or of the generic format's JSON), which cannot be combined with
    /// another constraint.
    pub(crate) async fn configure(
        &self,
        params: &mut GenerateParams,
        model: &Arc<Model>,
    ) -> Result<(), ApiError> {
        let tokenizer = model.tokenizer();
        params.preserved_tokens = self.format.preserved_tokens(tokenizer);
        let constraint = self
            .format
            .constraint(&self.tools, &self.choice, self.parallel, tokenizer)
            .map_err(|e| ApiError::invalid_param("tools", e.to_string()))?;
        if let Some(constraint) = constraint {
            self.check_schemas(model).await?;
            if params.constraint.is_some() {
                return Err(ApiError::invalid(
                    "this model's tool calls are constrained output, which cannot be combined with response_format, json_schema, grammar or regex",
                ));
            }
            params.constraint = Some(constraint);
        }
        Ok(())
    }

    /// Each tool's schema compiled, off the runtime (the first constraint of a model also
    /// builds its vocabulary), so that one that cannot constrain a call is the request's error.
    async fn check_schemas(&self, model: &Arc<Model>) -> Result<(), ApiError> {
        let (model, tools) = (model.clone(), self.tools.clone());
        tokio::task::spawn_blocking(move || -> llmrt::Result<()> {
            tools::check_parameter_schemas(&tools, &model.constraint_vocabulary()?)
        })
        .await
        .map_err(|e| ApiError::internal(format!("the tool schema check failed: {e}")))?
        .map_err(|e| ApiError::invalid_param("tools", e.to_string()))
    }

    /// The assistant message of a whole reply, and whether it calls tools.
    pub(crate) fn message(&self, text: &str, response_id: &str) -> (Value, bool) {
        let reply = self.format.parse(text);
        let calls: Vec<Value> = reply
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, c)| openai_call(c, response_id, i))
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

    /// A reader of the reply as it streams.
    pub(crate) fn stream(&self, response_id: &str) -> StreamedReply {
        StreamedReply {
            reply: ReplyStream::new(self.format),
            response_id: response_id.to_string(),
            calls: 0,
        }
    }
}

/// A streaming reply turned into chat-completion deltas.
pub(crate) struct StreamedReply {
    reply: ReplyStream,
    response_id: String,
    /// Calls sent so far.
    calls: usize,
}

impl StreamedReply {
    /// The deltas `piece` makes certain.
    pub(crate) fn push(&mut self, piece: &str) -> Vec<Value> {
        let deltas = self.reply.push(piece);
        self.deltas(deltas)
    }

    /// The deltas of the reply's end, and whether the reply called tools.
    pub(crate) fn finish(&mut self) -> (Vec<Value>, bool) {
        let reply = std::mem::replace(&mut self.reply, ReplyStream::new(ToolFormat::Generic));
        let deltas = self.deltas(reply.finish());
        (deltas, self.calls > 0)
    }

    fn deltas(&mut self, deltas: Vec<ReplyDelta>) -> Vec<Value> {
        deltas
            .into_iter()
            .map(|d| match d {
                ReplyDelta::Content(text) => json!({ "content": text }),
                ReplyDelta::Call(call) => {
                    let index = self.calls;
                    self.calls += 1;
                    let mut call = openai_call(&call, &self.response_id, index);
                    call["index"] = json!(index);
                    json!({ "tool_calls": [call] })
                }
            })
            .collect()
    }
}

/// A call as OpenAI returns it; its id is the model's, or made from the response's id and the
/// call's index.
fn openai_call(call: &ToolCall, response_id: &str, index: usize) -> Value {
    let id = call.id.clone().unwrap_or_else(|| {
        format!(
            "call_{}_{index}",
            response_id.rsplit('-').next().unwrap_or("")
        )
    });
    json!({
        "id": id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments.to_string()},
    })
}
