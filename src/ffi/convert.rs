//! Conversions between C arguments and Rust values: pointers to references, C strings to `&str`,
//! results into caller buffers. Each checks what C cannot: NULL, UTF-8, sizes.

use std::ffi::{c_char, CStr};

use super::boundary::{llm_status, FfiError};

/// `ptr` as a shared reference, or `LLM_ERR_NULL` naming `argument`.
///
/// # Safety
/// `ptr` is NULL or points to a live `T` not mutated during `'a`.
pub(crate) unsafe fn as_ref<'a, T>(ptr: *const T, argument: &str) -> Result<&'a T, FfiError> {
    // SAFETY: the caller guarantees `ptr` is NULL or valid; NULL becomes None.
    unsafe { ptr.as_ref() }.ok_or_else(|| FfiError::null(argument))
}

/// `ptr` as an exclusive reference, or `LLM_ERR_NULL` naming `argument`.
///
/// # Safety
/// `ptr` is NULL or points to a live `T` that nothing else accesses during `'a`.
pub(crate) unsafe fn as_mut<'a, T>(ptr: *mut T, argument: &str) -> Result<&'a mut T, FfiError> {
    // SAFETY: the caller guarantees `ptr` is NULL or valid and unaliased; NULL becomes None.
    unsafe { ptr.as_mut() }.ok_or_else(|| FfiError::null(argument))
}

/// A NUL-terminated C string as UTF-8.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, argument: &str) -> Result<&'a str, FfiError> {
    if ptr.is_null() {
        return Err(FfiError::null(argument));
    }
    // SAFETY: non-NULL, and the caller guarantees NUL termination and lifetime.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    utf8(bytes, argument)
}

/// `len` bytes at `ptr` (not necessarily NUL-terminated) as UTF-8.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes that outlive `'a`.
pub(crate) unsafe fn str_with_len<'a>(
    ptr: *const c_char,
    len: usize,
    argument: &str,
) -> Result<&'a str, FfiError> {
    // SAFETY: forwarded from the caller.
    utf8(unsafe { slice(ptr.cast::<u8>(), len, argument) }?, argument)
}

fn utf8<'a>(bytes: &'a [u8], argument: &str) -> Result<&'a str, FfiError> {
    std::str::from_utf8(bytes).map_err(|e| {
        FfiError::new(
            llm_status::LLM_ERR_INVALID_UTF8,
            format!("`{argument}` is not valid UTF-8 ({e})"),
        )
    })
}

/// `len` elements at `ptr`; NULL is accepted only when `len` is 0.
///
/// # Safety
/// `ptr` is NULL or points to `len` initialized `T`s that outlive `'a`.
pub(crate) unsafe fn slice<'a, T>(
    ptr: *const T,
    len: usize,
    argument: &str,
) -> Result<&'a [T], FfiError> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(FfiError::null(argument))
        };
    }
    // SAFETY: non-NULL (so aligned and valid per the caller's contract) for `len` elements.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Checks that `buf` can take `len` elements: NULL only with `len` 0 (a size query).
pub(crate) fn check_buffer<T>(buf: *mut T, len: usize, argument: &str) -> Result<(), FfiError> {
    if buf.is_null() && len > 0 {
        return Err(FfiError::null(argument));
    }
    Ok(())
}

/// Copies `bytes` and a terminating NUL into `buf` of `len` bytes. Returns `bytes.len()`, or
/// `LLM_ERR_BUFFER_TOO_SMALL` with the size needed (including the NUL), writing nothing.
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes.
pub(crate) unsafe fn write_string(
    bytes: &[u8],
    buf: *mut c_char,
    len: usize,
    what: &str,
) -> Result<usize, FfiError> {
    check_buffer(buf, len, "buf")?;
    let needed = bytes.len() + 1;
    if needed > len {
        return Err(FfiError::too_small(what, needed, len));
    }
    // SAFETY: `buf` is non-NULL (len ≥ needed ≥ 1) with room for `needed` bytes per the caller's
    // contract; the source is a Rust slice, so the ranges cannot overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
        *buf.add(bytes.len()) = 0;
    }
    Ok(bytes.len())
}

/// Copies `items` into `buf` of `len` elements. Returns `items.len()`, or
/// `LLM_ERR_BUFFER_TOO_SMALL` with the count needed, writing nothing.
///
/// # Safety
/// `buf` is NULL or points to `len` writable `T`s.
pub(crate) unsafe fn write_slice<T: Copy>(
    items: &[T],
    buf: *mut T,
    len: usize,
    what: &str,
) -> Result<usize, FfiError> {
    check_buffer(buf, len, "buf")?;
    if items.len() > len {
        return Err(FfiError::too_small(what, items.len(), len));
    }
    if !items.is_empty() {
        // SAFETY: `buf` is non-NULL (len ≥ items.len() ≥ 1) with room for the items; the source
        // is a Rust slice, so the ranges cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), buf, items.len()) };
    }
    Ok(items.len())
}
