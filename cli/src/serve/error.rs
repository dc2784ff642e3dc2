//! Errors as OpenAI's API shapes them: `{"error": {"message", "type", "param", "code"}}` with
//! the matching HTTP status.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    param: Option<String>,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            code: None,
            param: None,
            message: message.into(),
        }
    }

    /// A request the server cannot act on: bad JSON, a wrong type, a value out of range.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// [`ApiError::invalid`] naming the field at fault.
    pub(crate) fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(param.to_string()),
            ..ApiError::invalid(message)
        }
    }

    pub(crate) fn context_length(message: impl Into<String>) -> Self {
        ApiError {
            code: Some("context_length_exceeded"),
            param: Some("messages".into()),
            ..ApiError::invalid(message)
        }
    }

    pub(crate) fn unauthorized() -> Self {
        ApiError {
            code: Some("invalid_api_key"),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "a valid API key is required: Authorization: Bearer KEY",
            )
        }
    }

    pub(crate) fn model_not_found(name: &str) -> Self {
        ApiError {
            code: Some("model_not_found"),
            param: Some("model".into()),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("the model `{name}` does not exist"),
            )
        }
    }

    pub(crate) fn not_found(path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no endpoint {path}"),
        )
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable_error",
            message,
        )
    }

    pub(crate) fn queue_full() -> Self {
        ApiError::unavailable("every slot is busy and the queue is full; retry later")
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON body (also sent as an SSE event when a stream fails midway).
    pub(crate) fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl From<llmrt::Error> for ApiError {
    fn from(e: llmrt::Error) -> Self {
        use llmrt::Error;
        match &e {
            Error::ContextFull { .. } => ApiError::context_length(e.to_string()),
            Error::InvalidArgument(_)
            | Error::InvalidUtf8(_)
            | Error::Tokenizer(_)
            | Error::ChatTemplate(_) => ApiError::invalid(e.to_string()),
            Error::KvPoolFull { .. } => ApiError::unavailable(e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(super::RETRY_AFTER.as_secs()),
            );
        }
        response
    }
}
