//! Status codes, the thread-local last error, and the one boundary every exported function goes
//! through: it catches panics, records failures, and keeps the library from printing.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

use crate::Error;

/// Result of an llmrt call.
///
/// The numbers are part of the ABI: a code is never renumbered or reused, new codes are appended.
/// `llm_last_error()` explains the most recent failure on the calling thread.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum llm_status {
    /// Success.
    LLM_OK = 0,
    /// A required pointer argument is NULL.
    LLM_ERR_NULL = 1,
    /// An argument is out of range or inconsistent (a token id outside the vocabulary, an empty
    /// prompt, a negative temperature, …).
    LLM_ERR_INVALID_ARGUMENT = 2,
    /// A string argument is not valid UTF-8.
    LLM_ERR_INVALID_UTF8 = 3,
    /// A file could not be opened or mapped.
    LLM_ERR_IO = 4,
    /// The file is not a valid GGUF file.
    LLM_ERR_INVALID_GGUF = 5,
    /// The model uses an architecture or tensor type llmrt does not implement.
    LLM_ERR_UNSUPPORTED = 6,
    /// The tokens do not fit in the session's context window.
    LLM_ERR_CONTEXT_FULL = 7,
    /// A caller's buffer is too small; the function reports the size needed.
    LLM_ERR_BUFFER_TOO_SMALL = 8,
    /// The tokenizer could not be built from the file, or failed on the input.
    LLM_ERR_TOKENIZER = 9,
    /// The chat template does not compile, or failed to render the messages.
    LLM_ERR_TEMPLATE = 10,
    /// The operation was cancelled. (Returning false from an `llm_token_callback` is not an error:
    /// `llm_generate` then returns `LLM_OK` with stop reason `LLM_STOP_CANCELLED`.)
    LLM_ERR_CANCELLED = 11,
    /// llmrt hit an internal bug (a Rust panic) and recovered; the message says where. A session
    /// that was in use stays valid but its context is unspecified: call `llm_session_reset`.
    LLM_ERR_PANIC = 12,
    /// The file is valid GGUF but not a model llmrt can run: a metadata key or tensor is missing
    /// or has the wrong type or shape.
    LLM_ERR_INVALID_MODEL = 13,
    /// The requested item (a metadata key, …) does not exist.
    LLM_ERR_NOT_FOUND = 14,
    /// A saved-session file is damaged, truncated, of another format version, or was saved with
    /// another model or cache type; the session is unchanged.
    LLM_ERR_INVALID_SESSION_FILE = 15,
}

impl llm_status {
    const ALL: [llm_status; 16] = [
        llm_status::LLM_OK,
        llm_status::LLM_ERR_NULL,
        llm_status::LLM_ERR_INVALID_ARGUMENT,
        llm_status::LLM_ERR_INVALID_UTF8,
        llm_status::LLM_ERR_IO,
        llm_status::LLM_ERR_INVALID_GGUF,
        llm_status::LLM_ERR_UNSUPPORTED,
        llm_status::LLM_ERR_CONTEXT_FULL,
        llm_status::LLM_ERR_BUFFER_TOO_SMALL,
        llm_status::LLM_ERR_TOKENIZER,
        llm_status::LLM_ERR_TEMPLATE,
        llm_status::LLM_ERR_CANCELLED,
        llm_status::LLM_ERR_PANIC,
        llm_status::LLM_ERR_INVALID_MODEL,
        llm_status::LLM_ERR_NOT_FOUND,
        llm_status::LLM_ERR_INVALID_SESSION_FILE,
    ];

    /// The status a library error maps to.
    pub(crate) fn of_error(error: &Error) -> llm_status {
        match error {
            Error::Io { .. } => llm_status::LLM_ERR_IO,
            Error::InvalidGguf(_) => llm_status::LLM_ERR_INVALID_GGUF,
            Error::MissingKey { .. }
            | Error::WrongType { .. }
            | Error::MissingTensor { .. }
            | Error::TensorShape { .. } => llm_status::LLM_ERR_INVALID_MODEL,
            Error::UnsupportedTensorType { .. } | Error::UnsupportedArchitecture { .. } => {
                llm_status::LLM_ERR_UNSUPPORTED
            }
            Error::Tokenizer(_) => llm_status::LLM_ERR_TOKENIZER,
            Error::ChatTemplate(_) => llm_status::LLM_ERR_TEMPLATE,
            Error::ContextFull { .. } | Error::KvPoolFull { .. } => {
                llm_status::LLM_ERR_CONTEXT_FULL
            }
            Error::InvalidUtf8(_) => llm_status::LLM_ERR_INVALID_UTF8,
            Error::InvalidArgument(_) => llm_status::LLM_ERR_INVALID_ARGUMENT,
            Error::InvalidSessionFile(_) => llm_status::LLM_ERR_INVALID_SESSION_FILE,
            Error::Cancelled => llm_status::LLM_ERR_CANCELLED,
            Error::Internal(_) => llm_status::LLM_ERR_PANIC,
        }
    }

    /// A short description, NUL-terminated for C.
    fn description(self) -> &'static str {
        match self {
            llm_status::LLM_OK => "success\0",
            llm_status::LLM_ERR_NULL => "a required pointer argument is NULL\0",
            llm_status::LLM_ERR_INVALID_ARGUMENT => "invalid argument\0",
            llm_status::LLM_ERR_INVALID_UTF8 => "string is not valid UTF-8\0",
            llm_status::LLM_ERR_IO => "I/O error\0",
            llm_status::LLM_ERR_INVALID_GGUF => "not a valid GGUF file\0",
            llm_status::LLM_ERR_UNSUPPORTED => "unsupported model\0",
            llm_status::LLM_ERR_CONTEXT_FULL => "context window is full\0",
            llm_status::LLM_ERR_BUFFER_TOO_SMALL => "buffer too small\0",
            llm_status::LLM_ERR_TOKENIZER => "tokenizer error\0",
            llm_status::LLM_ERR_TEMPLATE => "chat template error\0",
            llm_status::LLM_ERR_CANCELLED => "cancelled\0",
            llm_status::LLM_ERR_PANIC => "internal error (panic)\0",
            llm_status::LLM_ERR_INVALID_MODEL => "invalid model\0",
            llm_status::LLM_ERR_NOT_FOUND => "not found\0",
            llm_status::LLM_ERR_INVALID_SESSION_FILE => "invalid session file\0",
        }
    }
}

/// Returned by the functions that return an `int32_t` count when they fail for any reason other
/// than a too-small buffer (see `llm_last_status()` and `llm_last_error()`).
pub const LLM_FAILED: i32 = -2147483647 - 1;

/// A failure on its way to the C caller: a status, a message, and for a too-small buffer the size
/// the caller must provide.
#[derive(Debug)]
pub(crate) struct FfiError {
    pub(crate) status: llm_status,
    pub(crate) message: String,
    /// Elements needed when `status` is `LLM_ERR_BUFFER_TOO_SMALL`.
    pub(crate) needed: Option<usize>,
}

impl FfiError {
    pub(crate) fn new(status: llm_status, message: impl Into<String>) -> Self {
        FfiError {
            status,
            message: message.into(),
            needed: None,
        }
    }

    /// A NULL `argument`.
    pub(crate) fn null(argument: &str) -> Self {
        Self::new(llm_status::LLM_ERR_NULL, format!("`{argument}` is NULL"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(llm_status::LLM_ERR_INVALID_ARGUMENT, message)
    }

    /// `what` needs `needed` elements but the caller gave room for `len`.
    pub(crate) fn too_small(what: &str, needed: usize, len: usize) -> Self {
        FfiError {
            status: llm_status::LLM_ERR_BUFFER_TOO_SMALL,
            message: format!("{what} needs a buffer of {needed}, got {len}"),
            needed: Some(needed),
        }
    }

    fn panic(payload: Box<dyn Any + Send>) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("unknown panic payload");
        let location = PANIC_LOCATION.with(|l| l.take());
        let message = match location {
            Some(at) => format!("panic at {at}: {what}"),
            None => format!("panic: {what}"),
        };
        Self::new(llm_status::LLM_ERR_PANIC, message)
    }
}

impl From<Error> for FfiError {
    fn from(error: Error) -> Self {
        Self::new(llm_status::of_error(&error), error.to_string())
    }
}

/// The message and status of the last failure on one thread.
struct LastError {
    status: llm_status,
    /// NUL-terminated message; empty after a successful call. Cleared in place (keeping its
    /// capacity), so a pointer handed out stays valid until the next failure on this thread.
    message: Vec<u8>,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError {
        status: llm_status::LLM_OK,
        message: vec![0],
    });
    /// Whether this thread is inside an exported function (panics here are reported, not printed).
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic on this thread happened, captured by the panic hook.
    static PANIC_LOCATION: Cell<Option<String>> = const { Cell::new(None) };
}

/// Exported calls in progress on any thread; while there are some, panics on the sessions' worker
/// threads (named `llmrt-*`, whose panics propagate to the calling thread) are not printed either.
static CALLS_IN_PROGRESS: AtomicUsize = AtomicUsize::new(0);

fn record(status: llm_status, message: &str) {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        e.status = status;
        e.message.clear();
        // An interior NUL would cut the C string short; show it instead.
        e.message
            .extend_from_slice(message.replace('\0', "\\0").as_bytes());
        e.message.push(0);
    });
}

/// Makes the panic hook quiet for panics inside exported calls, chaining to the previous hook for
/// every other panic. Installed once, on the first exported call, because the library must never
/// print: the default hook would write "thread panicked at …" to the host's stderr even though the
/// panic is caught and reported as `LLM_ERR_PANIC`.
fn install_quiet_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            // Evaluated lazily: `thread::current()` on a thread that never asked before (a C
            // thread) allocates a handle that lives until exit, which valgrind reports.
            let quiet = IN_CALL.with(Cell::get)
                || (CALLS_IN_PROGRESS.load(Ordering::Relaxed) > 0
                    && std::thread::current()
                        .name()
                        .is_some_and(|n| n.starts_with("llmrt-")));
            if quiet {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_LOCATION.with(|l| l.set(at));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs the body of an exported function: catches a panic, and records the outcome as the
/// thread's last error (cleared on success).
pub(crate) fn guard<T>(body: impl FnOnce() -> Result<T, FfiError>) -> Result<T, FfiError> {
    install_quiet_panic_hook();
    // A callback from inside a call may call llmrt again: restore the outer state afterwards.
    let was_in_call = IN_CALL.with(|c| c.replace(true));
    CALLS_IN_PROGRESS.fetch_add(1, Ordering::Relaxed);
    // Unwind safety: after a panic the objects the body touched are only ever reset or freed
    // (documented on LLM_ERR_PANIC); no Rust invariant depends on their contents.
    let outcome = panic::catch_unwind(AssertUnwindSafe(body));
    CALLS_IN_PROGRESS.fetch_sub(1, Ordering::Relaxed);
    IN_CALL.with(|c| c.set(was_in_call));
    let result = outcome.unwrap_or_else(|payload| Err(FfiError::panic(payload)));
    match &result {
        Ok(_) => record(llm_status::LLM_OK, ""),
        Err(e) => record(e.status, &e.message),
    }
    result
}

/// [`guard`] for functions returning a status.
pub(crate) fn guard_status(body: impl FnOnce() -> Result<(), FfiError>) -> llm_status {
    match guard(body) {
        Ok(()) => llm_status::LLM_OK,
        Err(e) => e.status,
    }
}

/// Frees a handle made by `Box::into_raw`, as every `llm_*_free` does: NULL is a no-op, and a
/// panic in the handle's drop is caught like any other.
///
/// # Safety
/// `ptr` is NULL or came from `Box::into_raw` of a `Box<T>`, not yet freed and not in use.
pub(crate) unsafe fn free_handle<T>(ptr: *mut T) {
    let _ = guard_status(|| {
        if !ptr.is_null() {
            // SAFETY: forwarded from this function's contract.
            drop(unsafe { Box::from_raw(ptr) });
        }
        Ok(())
    });
}

/// [`guard`] for functions returning an object (NULL on failure).
pub(crate) fn guard_ptr<T>(body: impl FnOnce() -> Result<*mut T, FfiError>) -> *mut T {
    guard(body).unwrap_or(std::ptr::null_mut())
}

/// [`guard`] for functions returning a count: the count, `-needed` for a too-small buffer, or
/// [`LLM_FAILED`].
pub(crate) fn guard_count(body: impl FnOnce() -> Result<usize, FfiError>) -> i32 {
    let result = guard(|| {
        body().and_then(|n| {
            i32::try_from(n).map_err(|_| FfiError::invalid(format!("result of {n} is too large")))
        })
    });
    match result {
        Ok(n) => n,
        Err(FfiError {
            needed: Some(needed),
            ..
        }) => match i32::try_from(needed) {
            Ok(n) => -n,
            Err(_) => {
                record(
                    llm_status::LLM_ERR_INVALID_ARGUMENT,
                    &format!("a buffer of {needed} would be needed, more than int32_t counts"),
                );
                LLM_FAILED
            }
        },
        Err(_) => LLM_FAILED,
    }
}

/// The message of the last failed llmrt call on the calling thread, or "" if the last call
/// succeeded. Never NULL. Thread-local: each thread sees its own failures.
///
/// Lifetime: the string is owned by llmrt and valid until the next llmrt call on this thread.
#[no_mangle]
pub extern "C" fn llm_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().message.as_ptr().cast())
}

/// The status of the last llmrt call on the calling thread that returns a status, an object or a
/// count (`LLM_OK` if it succeeded). Useful after a function that returned NULL or `LLM_FAILED`.
#[no_mangle]
pub extern "C" fn llm_last_status() -> llm_status {
    LAST_ERROR.with(|e| e.borrow().status)
}

/// A static description of a status code, e.g. "buffer too small". Never NULL; an unknown
/// number gives "unknown status". The string lives as long as the library.
///
/// `status` is an `int` rather than an `llm_status` so that any number is safe to pass.
#[no_mangle]
pub extern "C" fn llm_status_str(status: c_int) -> *const c_char {
    llm_status::ALL
        .iter()
        .find(|s| **s as c_int == status)
        .map_or("unknown status\0", |s| s.description())
        .as_ptr()
        .cast()
}

/// The library version, e.g. "0.1.0". Static, never NULL.
#[no_mangle]
pub extern "C" fn llm_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// A one-line description of the build and the kernels in use, e.g.
/// "llmrt 0.1.0; simd avx2; 8 cpus". The SIMD level honours the `LLMRT_SIMD` environment
/// variable as read at the first call. Static, never NULL.
#[no_mangle]
pub extern "C" fn llm_system_info() -> *const c_char {
    static INFO: OnceLock<String> = OnceLock::new();
    INFO.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        format!(
            "llmrt {}; simd {}; {cpus} cpus\0",
            env!("CARGO_PKG_VERSION"),
            crate::session::default_simd().name()
        )
    })
    .as_ptr()
    .cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last_error() -> String {
        // SAFETY: llm_last_error returns a NUL-terminated string valid until the next call.
        unsafe { CStr::from_ptr(llm_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_with_its_message_and_location() {
        let status = guard_status(|| panic!("kaboom {}", 42));
        assert_eq!(status, llm_status::LLM_ERR_PANIC);
        assert_eq!(llm_last_status(), llm_status::LLM_ERR_PANIC);
        let message = last_error();
        assert!(message.contains("kaboom 42"), "{message}");
        assert!(message.contains("boundary.rs"), "{message}");
        // The next successful call clears it.
        assert_eq!(guard_status(|| Ok(())), llm_status::LLM_OK);
        assert_eq!(last_error(), "");
        assert_eq!(llm_last_status(), llm_status::LLM_OK);
    }

    #[test]
    fn counts_report_the_size_needed_or_failure() {
        assert_eq!(guard_count(|| Ok(7)), 7);
        assert_eq!(guard_count(|| Err(FfiError::too_small("x", 12, 3))), -12);
        assert_eq!(llm_last_status(), llm_status::LLM_ERR_BUFFER_TOO_SMALL);
        assert_eq!(guard_count(|| Err(FfiError::null("model"))), LLM_FAILED);
        assert_eq!(last_error(), "`model` is NULL");
        assert_eq!(guard_count(|| Ok(usize::MAX)), LLM_FAILED);
    }

    #[test]
    fn every_status_has_a_distinct_number_and_a_description() {
        for (i, s) in llm_status::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "numbers are dense and in order");
            // SAFETY: static NUL-terminated strings.
            let d = unsafe { CStr::from_ptr(llm_status_str(*s as c_int)) };
            assert!(!d.to_bytes().is_empty());
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(llm_status_str(-5)) };
        assert_eq!(unknown.to_str(), Ok("unknown status"));
    }
}
