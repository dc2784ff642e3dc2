//! The library's one error type. The C ABI maps each variant to an `llm_status`; Python raises a
//! matching `LlmError` subclass.

/// Everything that can go wrong in llmrt.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, mapped or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not a valid GGUF file; the message says what is wrong and where.
    #[error("invalid GGUF: {0}")]
    InvalidGguf(String),

    /// A metadata key the caller needs is absent.
    #[error("metadata key `{key}` is missing")]
    MissingKey { key: String },

    /// A metadata key holds a value of another type than the caller needs.
    #[error("metadata key `{key}` has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },

    /// A tensor the model needs is absent from the file.
    #[error("tensor `{name}` is missing")]
    MissingTensor { name: String },

    /// A tensor has another shape than the model's config implies.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },

    /// A tensor is stored in a block type llmrt has no kernels for.
    #[error("tensor `{tensor}` has type {ty}, which llmrt does not support")]
    UnsupportedTensorType { tensor: String, ty: String },

    /// The file's `general.architecture` is not one llmrt implements.
    #[error("unsupported architecture `{arch}` (supported: {supported})")]
    UnsupportedArchitecture { arch: String, supported: String },

    /// The tokenizer could not be built from metadata, or failed on input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A chat template failed to parse or render.
    #[error("chat template: {0}")]
    ChatTemplate(String),

    /// Tokens would not fit in the session's context window.
    #[error("context is full: {needed} tokens needed, the context holds {n_ctx}")]
    ContextFull { needed: usize, n_ctx: usize },

    /// A sequence of an engine needs cache blocks that its shared pool does not have free.
    #[error(
        "the KV pool is full: {needed} more blocks of {block_positions} positions needed, \
         {free} free of {total}"
    )]
    KvPoolFull {
        needed: usize,
        free: usize,
        total: usize,
        block_positions: usize,
    },

    /// Input text is not valid UTF-8.
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(&'static str),

    /// A saved-session file is damaged, truncated, of another format version, or was saved
    /// with another model or cache; the session it was to be loaded into is unchanged.
    #[error("invalid session file: {0}")]
    InvalidSessionFile(String),

    /// A caller-supplied argument is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The caller's callback asked to stop.
    #[error("cancelled by the caller")]
    Cancelled,

    /// A bug in llmrt was caught (a panic on a worker thread); the message says where. The work
    /// it interrupted is lost, the rest goes on.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand for results carrying [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
