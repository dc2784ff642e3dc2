//! Tool calls on the chat endpoint: OpenAI's `tools`, `tool_choice` and `parallel_tool_calls`
//! in, `tool_calls` out (whole, or streamed as deltas, one per complete call).

use std::sync::Arc;

use llmrt::generate::GenerateParams;
use llmrt::tools::{self, ReplyDelta, ReplyStream, ToolFormat, ToolUse};
use llmrt::Model;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;

/// The tool fields of a chat request.
#[derive(Deserialize, Default)]
pub(crate) struct ToolFields {
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
}

/// A library error about the tool fields as a 400 naming the field its message begins with.
fn tool_error(e: llmrt::Error) -> ApiError {
    let message = e.to_string();
    let param = if message.contains("tool_choice:") {
        "tool_choice"
    } else {
        "tools"
    };
    ApiError::invalid_param(param, message)
}

impl ToolFields {
    /// What the request asks of the tools (see [`ToolUse::from_openai`]).
    pub(crate) fn tool_use(&self, template_source: &str) -> Result<Option<ToolUse>, ApiError> {
        ToolUse::from_openai(
            self.tools.as_deref(),
            self.tool_choice.as_ref(),
            self.parallel_tool_calls,
            template_source,
        )
        .map_err(tool_error)
    }
}

/// Adds what the tools need to `params` (see [`ToolUse::configure`]); when that constrains the
/// reply, each tool's schema is compiled first, off the runtime (the first constraint of a
/// model also builds its vocabulary), so that one that cannot constrain a call is the
/// request's error.
pub(crate) async fn configure(
    tool_use: &ToolUse,
    params: &mut GenerateParams,
    model: &Arc<Model>,
) -> Result<(), ApiError> {
    let had_constraint = params.constraint.is_some();
    tool_use
        .configure(params, model.tokenizer())
        .map_err(|e| match had_constraint {
            true => ApiError::invalid(e.to_string()),
            false => tool_error(e),
        })?;
    if params.constraint.is_some() && !had_constraint {
        let (model, tools) = (model.clone(), tool_use.tools.clone());
        tokio::task::spawn_blocking(move || -> llmrt::Result<()> {
            tools::check_parameter_schemas(&tools, &model.constraint_vocabulary()?)
        })
        .await
        .map_err(|e| ApiError::internal(format!("the tool schema check failed: {e}")))?
        .map_err(|e| ApiError::invalid_param("tools", e.to_string()))?;
    }
    Ok(())
}

/// The stem of the ids of a response's calls: the response id's counter.
pub(crate) fn call_id_stem(response_id: &str) -> &str {
    response_id.rsplit('-').next().unwrap_or(response_id)
}

/// A streaming reply turned into chat-completion deltas.
pub(crate) struct StreamedReply {
    reply: ReplyStream,
    id_stem: String,
    /// Calls sent so far.
    calls: usize,
}

impl StreamedReply {
    pub(crate) fn new(tool_use: &ToolUse, response_id: &str) -> StreamedReply {
        StreamedReply {
            reply: ReplyStream::new(tool_use.format),
            id_stem: call_id_stem(response_id).to_string(),
            calls: 0,
        }
    }

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
                    let mut call = call.to_openai(&self.id_stem, index);
                    call["index"] = json!(index);
                    json!({ "tool_calls": [call] })
                }
            })
            .collect()
    }
}
