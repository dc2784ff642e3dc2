//! Python semantics for chat templates: values print as Python's `str()` does, and the Jinja2
//! filters and tests whose definitions minijinja's differ from are defined here as Jinja2
//! defines them (see [`install`]).

use std::fmt::Write as _;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};

use super::pystr::{is_python_space, pad, python_splitlines, python_strip};

/// Put Python's printing and methods and Jinja2's versions of these filters and tests in
/// `env`, in place of minijinja's:
///
/// - `string`, `join`, `trim`, `replace`, `indent`, `title`, `center`: on `str()` of their
///   input (`{'a': 1}`, `None`, `True` as Python writes them); `join` also by `attribute`,
///   `replace` with a `count`, `indent` with a string `width` and `first`/`blank` keywords,
///   `title` starting words after spaces and `-({[<` only (`it's` → `It's`);
/// - `round`: Python's `round()` (half to even, integers stay integers) and `method`;
/// - `length`/`count`: 0 for undefined, as `len()` of Jinja2's Undefined;
/// - `wordcount`, which minijinja lacks;
/// - tests `sequence` (strings and dicts are sequences), `iterable` (`none` is not) and
///   `number` (booleans are numbers).
pub(super) fn install(env: &mut Environment<'static>) {
    env.set_unknown_method_callback(super::pystr::python_methods);
    env.set_formatter(python_formatter);
    env.add_filter("string", string);
    env.add_filter("join", join);
    env.add_filter("trim", trim);
    env.add_filter("replace", replace);
    env.add_filter("indent", indent);
    env.add_filter("title", title);
    env.add_filter("center", center);
    env.add_filter("round", round);
    env.add_filter("length", length);
    env.add_filter("count", length);
    env.add_filter("wordcount", wordcount);
    env.add_test("sequence", |v: &Value| {
        matches!(
            v.kind(),
            ValueKind::String | ValueKind::Seq | ValueKind::Map | ValueKind::Undefined
        )
    });
    env.add_test("iterable", |v: &Value| {
        matches!(
            v.kind(),
            ValueKind::String
                | ValueKind::Bytes
                | ValueKind::Seq
                | ValueKind::Map
                | ValueKind::Iterable
                | ValueKind::Undefined
        )
    });
    env.add_test("number", |v: &Value| {
        matches!(v.kind(), ValueKind::Number | ValueKind::Bool)
    });
}

/// Python's `str()` of a value; undefined is empty, as Jinja2's Undefined is.
pub(super) fn python_str(value: &Value) -> String {
    let mut text = String::new();
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => text.push_str(value.as_str().unwrap_or_default()),
        _ => python_repr(value, &mut text),
    }
    text
}

fn type_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

/// Python's name for the type of a value that is not a string, for error messages.
fn python_type(value: &Value) -> &'static str {
    match value.kind() {
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number if value.is_integer() => "int",
        ValueKind::Number => "float",
        _ => "object",
    }
}

fn string(value: &Value) -> Value {
    if value.kind() == ValueKind::String {
        value.clone()
    } else {
        Value::from(python_str(value))
    }
}

/// `join(d='', attribute=None)`: `str()` of each item (or of its `attribute`, a dotted path
/// whose integer parts index), separated by `d`.
fn join(
    value: &Value,
    d: Option<Value>,
    attribute: Option<Value>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let d = kwargs.get::<Option<Value>>("d")?.or(d);
    let attribute = kwargs.get::<Option<Value>>("attribute")?.or(attribute);
    kwargs.assert_all_used()?;
    if value.is_undefined() {
        return Ok(String::new());
    }
    if !matches!(
        value.kind(),
        ValueKind::String | ValueKind::Seq | ValueKind::Map | ValueKind::Iterable
    ) {
        return Err(type_error(format!(
            "'{}' object is not iterable",
            python_type(value)
        )));
    }
    let separator = d.map_or_else(String::new, |d| python_str(&d));
    let mut items = Vec::new();
    for item in value.try_iter()? {
        let item = match &attribute {
            Some(path) => lookup(&item, path)?,
            None => item,
        };
        items.push(python_str(&item));
    }
    Ok(items.join(&separator))
}

/// Jinja2's attribute getter: `a.b.0` looks up `a`, then `b`, then index 0.
fn lookup(item: &Value, path: &Value) -> Result<Value, Error> {
    let Some(path) = path.as_str() else {
        return item.get_item(path);
    };
    let mut value = item.clone();
    for part in path.split('.') {
        value = match part.parse::<i64>() {
            Ok(index) => value.get_item(&Value::from(index))?,
            Err(_) => value.get_attr(part)?,
        };
    }
    Ok(value)
}

fn trim(value: &Value, chars: Option<Value>) -> Result<String, Error> {
    let text = python_str(value);
    let chars = chars.filter(|c| !c.is_none() && !c.is_undefined());
    let chars = match &chars {
        Some(c) => Some(c.as_str().ok_or_else(|| {
            type_error(format!(
                "strip arg must be None or str, not {}",
                python_type(c)
            ))
        })?),
        None => None,
    };
    Ok(python_strip(&text, chars, "strip").to_string())
}

fn replace(value: &Value, old: &Value, new: &Value, count: Option<Value>) -> Result<String, Error> {
    let (text, old, new) = (python_str(value), python_str(old), python_str(new));
    let count = match count.filter(|c| !c.is_none() && !c.is_undefined()) {
        Some(c) => i64::try_from(c)?,
        None => -1,
    };
    Ok(match usize::try_from(count) {
        Ok(n) => text.replacen(&old, &new, n),
        Err(_) => text.replace(&old, &new),
    })
}

/// `indent(width=4, first=False, blank=False)`: indent every line after the first by `width`
/// spaces (or by `width` itself when it is a string), the first too with `first`, blank lines
/// too with `blank`.
fn indent(
    value: &Value,
    width: Option<Value>,
    first: Option<bool>,
    blank: Option<bool>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let width = kwargs.get::<Option<Value>>("width")?.or(width);
    let first = kwargs
        .get::<Option<bool>>("first")?
        .or(first)
        .unwrap_or(false);
    let blank = kwargs
        .get::<Option<bool>>("blank")?
        .or(blank)
        .unwrap_or(false);
    kwargs.assert_all_used()?;
    let indention = match width {
        None => "    ".to_string(),
        Some(w) => match w.as_str() {
            Some(s) => s.to_string(),
            None => " ".repeat(usize::try_from(w)?),
        },
    };
    // Jinja2 appends a newline first, so that a final line break is kept.
    let text = python_str(value) + "\n";
    let lines = python_splitlines(&text, false);
    let mut out = String::new();
    if first {
        out.push_str(&indention);
    }
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
            if blank || !line.is_empty() {
                out.push_str(&indention);
            }
        }
        out.push_str(line);
    }
    Ok(out)
}

/// Jinja2's `title`: each word upper-cases its first character and lower-cases the rest;
/// words start after whitespace and after `-`, `(`, `{`, `[`, `<`.
fn title(value: &Value) -> String {
    let text = python_str(value);
    let mut out = String::with_capacity(text.len());
    let mut word_start = true;
    for c in text.chars() {
        if is_python_space(c) || "-({[<".contains(c) {
            out.push(c);
            word_start = true;
        } else if word_start {
            out.extend(c.to_uppercase());
            word_start = false;
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

fn center(value: &Value, width: Option<usize>) -> String {
    pad(&python_str(value), width.unwrap_or(80), ' ', "center")
}

/// `wordcount`: runs of letters, digits and `_` (Python's `\w+`).
fn wordcount(value: &Value) -> usize {
    let text = python_str(value);
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut count = 0;
    let mut in_word = false;
    for c in text.chars() {
        if word(c) && !in_word {
            count += 1;
        }
        in_word = word(c);
    }
    count
}

/// `length`: Python's `len()`; undefined has length 0, `none` and numbers have none.
fn length(value: &Value) -> Result<usize, Error> {
    match value.kind() {
        ValueKind::Undefined => Ok(0),
        ValueKind::String => Ok(value.as_str().unwrap_or_default().chars().count()),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable | ValueKind::Bytes => {
            match value.len() {
                Some(n) => Ok(n),
                None => Ok(value.try_iter()?.count()),
            }
        }
        _ => Err(type_error(format!(
            "object of type '{}' has no len()",
            python_type(value)
        ))),
    }
}

/// `round(precision=0, method='common')`: `common` is Python's `round()` (ties to even, on
/// the exact binary value; an integer stays an integer), `floor` and `ceil` give floats.
fn round(
    value: &Value,
    precision: Option<i64>,
    method: Option<String>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let precision = kwargs
        .get::<Option<i64>>("precision")?
        .or(precision)
        .unwrap_or(0);
    let method = kwargs.get::<Option<String>>("method")?.or(method);
    kwargs.assert_all_used()?;
    let precision =
        i32::try_from(precision).map_err(|_| type_error("round: precision out of range"))?;
    let method = method.as_deref().unwrap_or("common");
    if !matches!(value.kind(), ValueKind::Number | ValueKind::Bool) {
        return Err(type_error(format!(
            "type {} doesn't define __round__ method",
            python_type(value)
        )));
    }
    if method == "common" && (value.is_integer() || value.kind() == ValueKind::Bool) {
        let x = i64::try_from(value.clone())?;
        return Ok(Value::from(round_integer(x, precision)));
    }
    let x = f64::try_from(value.clone())?;
    let scale = 10f64.powi(precision);
    Ok(Value::from(match method {
        "common" => round_float(x, precision),
        "floor" => (x * scale).floor() / scale,
        "ceil" => (x * scale).ceil() / scale,
        _ => return Err(type_error("method must be 'common', 'ceil' or 'floor'")),
    }))
}

/// Python's `round(x, ndigits)` of an integer: unchanged for `ndigits >= 0`, else to a
/// multiple of 10^-ndigits, ties to even.
fn round_integer(x: i64, precision: i32) -> i64 {
    if precision >= 0 {
        return x;
    }
    let Some(unit) = 10i64.checked_pow(precision.unsigned_abs()) else {
        return 0;
    };
    let (quotient, remainder) = (x.div_euclid(unit), x.rem_euclid(unit));
    let up = 2 * remainder > unit || (2 * remainder == unit && quotient % 2 != 0);
    (quotient + i64::from(up)) * unit
}

/// Python's `round(x, ndigits)` of a float: correctly rounded to `ndigits` decimals (Rust's
/// fixed-precision formatting is exact and rounds ties to even, as CPython's is).
fn round_float(x: f64, precision: i32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    match usize::try_from(precision) {
        Ok(0) => x.round_ties_even(),
        Ok(digits) => format!("{x:.digits$}").parse().unwrap_or(x),
        Err(_) => {
            let unit = 10f64.powi(-precision);
            (x / unit).round_ties_even() * unit
        }
    }
}

/// Prints values as Jinja2 (that is, Python's `str()`) does: `None`, `True`/`False`, lists and
/// dicts in Python repr; undefined prints nothing.
fn python_formatter(
    out: &mut minijinja::Output,
    _state: &minijinja::State,
    value: &Value,
) -> Result<(), Error> {
    out.write_str(&python_str(value)).map_err(Error::from)
}

/// Python's repr of a number: integers as they are, floats by [`python_float`].
pub(super) fn python_number(value: &Value, json: bool) -> String {
    if value.is_integer() {
        value.to_string()
    } else {
        python_float(f64::try_from(value.clone()).unwrap_or(f64::NAN), json)
    }
}

/// Python's `repr()` of a value (what `str()` gives for everything but top-level strings).
fn python_repr(value: &Value, out: &mut String) {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => out.push_str(&python_number(value, false)),
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
pub(super) fn python_float(x: f64, json: bool) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr_matches_python() {
        assert_eq!(python_float(1.0, false), "1.0");
        assert_eq!(python_float(0.1, false), "0.1");
        assert_eq!(python_float(1e-5, false), "1e-05");
        assert_eq!(python_float(1.5e16, false), "1.5e+16");
        assert_eq!(python_float(123456.789, false), "123456.789");
        assert_eq!(python_float(f64::INFINITY, true), "Infinity");
    }

    #[test]
    fn round_matches_python() {
        // Python: round(2.5) == 2, round(3.5) == 4, round(-0.5) == -0.0, round(2.675, 2) ==
        // 2.67, round(0.125, 2) == 0.12, round(0.375, 2) == 0.38, round(1250, -2) == 1200,
        // round(1350, -2) == 1400, round(-1250, -2) == -1200, round(1234.5, -2) == 1200.0.
        assert_eq!(round_float(2.5, 0), 2.0);
        assert_eq!(round_float(3.5, 0), 4.0);
        assert!(round_float(-0.5, 0).is_sign_negative());
        assert_eq!(round_float(2.675, 2), 2.67);
        assert_eq!(round_float(0.125, 2), 0.12);
        assert_eq!(round_float(0.375, 2), 0.38);
        assert_eq!(round_integer(1250, -2), 1200);
        assert_eq!(round_integer(1350, -2), 1400);
        assert_eq!(round_integer(-1250, -2), -1200);
        assert_eq!(round_integer(7, 2), 7);
        assert_eq!(round_float(1234.5, -2), 1200.0);
    }
}
