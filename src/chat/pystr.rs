//! Python's `str` methods as chat templates call them (`message.content.split('</think>')`, …).
//!
//! minijinja-contrib's pycompat supplies most of them; the ones here are missing from it or
//! depart from Python: character (not byte) offsets, Python's whitespace set (which adds the
//! separators U+001C..U+001F to Unicode's), Python's answers on empty strings, and
//! `count('')`, which pycompat never finishes.

use minijinja::value::from_args;
use minijinja::{Error, ErrorKind, State, Value};

/// Python methods on values: the ones below for strings, pycompat's for the rest.
pub(super) fn python_methods(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    let Some(s) = value.as_str() else {
        return minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args);
    };
    let predicate = |test: fn(&str) -> bool| -> Result<Value, Error> {
        let () = from_args(args)?;
        Ok(Value::from(test(s)))
    };
    match method {
        "find" => python_find(s, args, false),
        "rfind" => python_find(s, args, true),
        "index" | "rindex" => {
            let found = python_find(s, args, method == "rindex")?;
            if found == Value::from(-1) {
                Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "substring not found",
                ))
            } else {
                Ok(found)
            }
        }
        "count" => {
            let (sub, start, end): (String, Option<i64>, Option<i64>) = from_args(args)?;
            Ok(Value::from(python_count(s, &sub, start, end)))
        }
        "title" => {
            let () = from_args(args)?;
            Ok(Value::from(python_title(s)))
        }
        "swapcase" => {
            let () = from_args(args)?;
            Ok(Value::from(swapcase(s)))
        }
        "islower" => predicate(|s| only_cased(s, char::is_lowercase)),
        "isupper" => predicate(|s| only_cased(s, char::is_uppercase)),
        "istitle" => predicate(is_title),
        "isspace" => predicate(|s| !s.is_empty() && s.chars().all(is_python_space)),
        "isalpha" => predicate(|s| !s.is_empty() && s.chars().all(char::is_alphabetic)),
        "isalnum" => predicate(|s| !s.is_empty() && s.chars().all(char::is_alphanumeric)),
        // Unicode's Numeric property for all three: Python's isdigit and isdecimal accept
        // fewer characters (not '½'), the same ASCII ones.
        "isdigit" | "isdecimal" | "isnumeric" => {
            predicate(|s| !s.is_empty() && s.chars().all(char::is_numeric))
        }
        "strip" | "lstrip" | "rstrip" => {
            let (chars,): (Option<Value>,) = from_args(args)?;
            let chars = chars.filter(|c| !c.is_none() && !c.is_undefined());
            let chars = match &chars {
                Some(c) => Some(string_arg(c, method)?),
                None => None,
            };
            Ok(Value::from(python_strip(s, chars, method)))
        }
        "split" | "rsplit" => {
            let (sep, maxsplit): (Option<Value>, Option<i64>) = from_args(args)?;
            let sep = match sep.filter(|v| !v.is_none() && !v.is_undefined()) {
                Some(v) => Some(string_arg(&v, method)?.to_string()),
                None => None,
            };
            let parts = python_split(
                s,
                sep.as_deref(),
                maxsplit.unwrap_or(-1),
                method == "rsplit",
            )?;
            Ok(parts.into_iter().map(Value::from).collect())
        }
        "splitlines" => {
            let (keepends,): (Option<bool>,) = from_args(args)?;
            let lines = python_splitlines(s, keepends.unwrap_or(false));
            Ok(lines.into_iter().map(Value::from).collect())
        }
        "center" | "ljust" | "rjust" => {
            let (width, fill): (usize, Option<String>) = from_args(args)?;
            let fill = match fill
                .as_deref()
                .map(|f| f.chars().collect::<Vec<_>>())
                .as_deref()
            {
                None => ' ',
                Some(&[c]) => c,
                Some(_) => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "the fill character must be exactly one character long",
                    ))
                }
            };
            Ok(Value::from(pad(s, width, fill, method)))
        }
        "zfill" => {
            let (width,): (usize,) = from_args(args)?;
            Ok(Value::from(zfill(s, width)))
        }
        "partition" | "rpartition" => {
            let (sep,): (String,) = from_args(args)?;
            if sep.is_empty() {
                return Err(Error::new(ErrorKind::InvalidOperation, "empty separator"));
            }
            let found = if method == "partition" {
                s.find(&sep)
            } else {
                s.rfind(&sep)
            };
            let parts = match found {
                Some(at) => [&s[..at], sep.as_str(), &s[at + sep.len()..]],
                None if method == "partition" => [s, "", ""],
                None => ["", "", s],
            };
            Ok(parts.into_iter().map(Value::from).collect())
        }
        "removeprefix" => {
            let (prefix,): (String,) = from_args(args)?;
            Ok(Value::from(s.strip_prefix(prefix.as_str()).unwrap_or(s)))
        }
        "removesuffix" => {
            let (suffix,): (String,) = from_args(args)?;
            Ok(Value::from(s.strip_suffix(suffix.as_str()).unwrap_or(s)))
        }
        // Python joins strings only (the `join` filter is the one that converts).
        "join" => {
            let (items,): (Value,) = from_args(args)?;
            let mut joined = String::new();
            for (i, item) in items.try_iter()?.enumerate() {
                let Some(text) = item.as_str() else {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!(
                            "sequence item {i}: expected str instance, {} found",
                            item.kind()
                        ),
                    ));
                };
                if i > 0 {
                    joined.push_str(s);
                }
                joined.push_str(text);
            }
            Ok(Value::from(joined))
        }
        _ => minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    }
}

fn string_arg<'a>(value: &'a Value, method: &str) -> Result<&'a str, Error> {
    value.as_str().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("{method} arg must be None or str, not {}", value.kind()),
        )
    })
}

/// Python's `str.isspace()` characters: Unicode's White_Space ones and U+001C..U+001F.
pub(super) fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The character range `s[start:end]` searches in, with Python's slice bounds; `None` where
/// Python finds nothing at all, not even an empty string (a start past the end or after `end`).
fn search_window(s: &str, start: Option<i64>, end: Option<i64>) -> Option<(usize, &str)> {
    let len = s.chars().count() as i64;
    let from_the_end = |i: i64| if i < 0 { (i + len).max(0) } else { i };
    let start = from_the_end(start.unwrap_or(0));
    let end = from_the_end(end.unwrap_or(len)).min(len);
    if start > len || start > end {
        return None;
    }
    let byte = |n: i64| s.char_indices().nth(n as usize).map_or(s.len(), |(i, _)| i);
    Some((start as usize, &s[byte(start)..byte(end)]))
}

/// `str.find(sub[, start[, end]])` / `str.rfind`: the character offset of `sub` within
/// `s[start:end]` (Python slice bounds), or -1.
pub(super) fn python_find(s: &str, args: &[Value], from_the_end: bool) -> Result<Value, Error> {
    let (sub, start, end): (String, Option<i64>, Option<i64>) = from_args(args)?;
    let Some((first, window)) = search_window(s, start, end) else {
        return Ok(Value::from(-1));
    };
    let found = if from_the_end {
        window.rfind(&sub)
    } else {
        window.find(&sub)
    };
    Ok(Value::from(found.map_or(-1, |byte| {
        (first + window[..byte].chars().count()) as i64
    })))
}

/// `str.count(sub[, start[, end]])`: non-overlapping occurrences; the empty string occurs
/// before each character and at the end.
fn python_count(s: &str, sub: &str, start: Option<i64>, end: Option<i64>) -> usize {
    match search_window(s, start, end) {
        None => 0,
        Some((_, window)) if sub.is_empty() => window.chars().count() + 1,
        Some((_, window)) => window.matches(sub).count(),
    }
}

/// A titlecase letter (`ǅ`): cased, but neither lower- nor upper-case.
fn is_titlecase(c: char) -> bool {
    !c.is_lowercase()
        && !c.is_uppercase()
        && !c.to_lowercase().eq(std::iter::once(c))
        && !c.to_uppercase().eq(std::iter::once(c))
}

fn is_cased(c: char) -> bool {
    c.is_lowercase() || c.is_uppercase() || is_titlecase(c)
}

/// `str.islower()` / `str.isupper()`: at least one cased character, and every cased one is
/// of the case `wanted` tests.
fn only_cased(s: &str, wanted: fn(char) -> bool) -> bool {
    let mut any = false;
    for c in s.chars().filter(|&c| is_cased(c)) {
        if !wanted(c) {
            return false;
        }
        any = true;
    }
    any
}

/// `str.istitle()`: upper- and titlecase letters only after uncased characters, lowercase ones
/// only after cased ones, and at least one cased character.
fn is_title(s: &str) -> bool {
    let mut previous_cased = false;
    let mut any = false;
    for c in s.chars() {
        if c.is_uppercase() || is_titlecase(c) {
            if previous_cased {
                return false;
            }
            previous_cased = true;
            any = true;
        } else if c.is_lowercase() {
            if !previous_cased {
                return false;
            }
            previous_cased = true;
            any = true;
        } else {
            previous_cased = false;
        }
    }
    any
}

fn swapcase(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_uppercase() {
            out.extend(c.to_lowercase());
        } else if c.is_lowercase() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `str.title()`: upper-case a cased character that follows an uncased one, lower-case the rest.
pub(super) fn python_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut previous_cased = false;
    for c in s.chars() {
        if previous_cased {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        previous_cased = is_cased(c);
    }
    out
}

/// `str.strip([chars])` / `lstrip` / `rstrip` (`which` names the method): Python's whitespace
/// without `chars`.
pub(super) fn python_strip<'a>(s: &'a str, chars: Option<&str>, which: &str) -> &'a str {
    let strip = |c: char| match chars {
        Some(chars) => chars.contains(c),
        None => is_python_space(c),
    };
    match which {
        "lstrip" => s.trim_start_matches(strip),
        "rstrip" => s.trim_end_matches(strip),
        _ => s.trim_matches(strip),
    }
}

/// `str.split(sep=None, maxsplit=-1)` and `str.rsplit`: without `sep`, runs of whitespace
/// separate and the ends are trimmed (the unsplit remainder keeps its far end).
fn python_split<'a>(
    s: &'a str,
    sep: Option<&str>,
    maxsplit: i64,
    from_the_end: bool,
) -> Result<Vec<&'a str>, Error> {
    let limit = usize::try_from(maxsplit).ok().map(|n| n.saturating_add(1));
    let mut parts: Vec<&str> = match sep {
        Some("") => return Err(Error::new(ErrorKind::InvalidOperation, "empty separator")),
        Some(sep) => match (limit, from_the_end) {
            (None, _) => s.split(sep).collect(),
            (Some(n), false) => s.splitn(n, sep).collect(),
            (Some(n), true) => s.rsplitn(n, sep).collect(),
        },
        None => {
            let mut parts = Vec::new();
            let mut rest = python_strip(s, None, if from_the_end { "rstrip" } else { "lstrip" });
            while !rest.is_empty() {
                if limit.is_some_and(|n| parts.len() + 1 == n) {
                    parts.push(rest);
                    break;
                }
                if from_the_end {
                    let start = rest
                        .char_indices()
                        .rev()
                        .find(|&(_, c)| is_python_space(c))
                        .map_or(0, |(i, c)| i + c.len_utf8());
                    parts.push(&rest[start..]);
                    rest = python_strip(&rest[..start], None, "rstrip");
                } else {
                    let end = rest.find(is_python_space).unwrap_or(rest.len());
                    parts.push(&rest[..end]);
                    rest = python_strip(&rest[end..], None, "lstrip");
                }
            }
            parts
        }
    };
    if from_the_end && (sep.is_none() || limit.is_some()) {
        parts.reverse();
    }
    Ok(parts)
}

/// `str.splitlines(keepends)`: Python's line boundaries, `\r\n` counting as one.
pub(super) fn python_splitlines(s: &str, keepends: bool) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let mut end = i + c.len_utf8();
        match c {
            '\r' => {
                if let Some(&(j, '\n')) = chars.peek() {
                    end = j + 1;
                    chars.next();
                }
            }
            '\n' | '\u{0b}' | '\u{0c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}'
            | '\u{2029}' => {}
            _ => continue,
        }
        lines.push(if keepends {
            &s[start..end]
        } else {
            &s[start..i]
        });
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// `str.center(width[, fill])` / `ljust` / `rjust` (`which` names the method); `center` puts
/// the odd fill character where Python does.
pub(super) fn pad(s: &str, width: usize, fill: char, which: &str) -> String {
    let len = s.chars().count();
    let Some(padding) = width.checked_sub(len).filter(|&n| n > 0) else {
        return s.to_string();
    };
    let left = match which {
        "ljust" => 0,
        "rjust" => padding,
        _ => padding / 2 + (padding & width & 1),
    };
    let fill = |n: usize| std::iter::repeat_n(fill, n);
    fill(left)
        .chain(s.chars())
        .chain(fill(padding - left))
        .collect()
}

/// `str.zfill(width)`: zeros after the sign.
fn zfill(s: &str, width: usize) -> String {
    let padding = width.saturating_sub(s.chars().count());
    let (sign, digits) = match s.strip_prefix(['+', '-']) {
        Some(rest) => s.split_at(s.len() - rest.len()),
        None => ("", s),
    };
    format!("{sign}{}{digits}", "0".repeat(padding))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split<'a>(s: &'a str, sep: Option<&str>, maxsplit: i64, right: bool) -> Vec<&'a str> {
        python_split(s, sep, maxsplit, right).unwrap()
    }

    #[test]
    fn find_title_and_count_count_characters() {
        let find = |args: &[Value]| python_find("añbñc", args, false).unwrap();
        // Python: 'añbñc'.find('ñ') == 1, .find('ñ', 2) == 3, .find('ñ', -2) == 3,
        // .find('c', 0, 4) == -1, .find('', 9) == -1, .rfind('ñ') == 3.
        assert_eq!(find(&[Value::from("ñ")]), Value::from(1));
        assert_eq!(find(&[Value::from("ñ"), Value::from(2)]), Value::from(3));
        assert_eq!(find(&[Value::from("ñ"), Value::from(-2)]), Value::from(3));
        assert_eq!(
            find(&[Value::from("c"), Value::from(0), Value::from(4)]),
            Value::from(-1)
        );
        assert_eq!(find(&[Value::from(""), Value::from(9)]), Value::from(-1));
        let rfind = python_find("añbñc", &[Value::from("ñ")], true).unwrap();
        assert_eq!(rfind, Value::from(3));
        // Python: "hELLO «wörld» it's 3rd".title() == "Hello «Wörld» It'S 3Rd".
        assert_eq!(
            python_title("hELLO «wörld» it's 3rd"),
            "Hello «Wörld» It'S 3Rd"
        );
        // 'abc'.find('', 3) == 3, 'abc'.find('', 2, 1) == -1.
        let abc = |args: &[Value]| python_find("abc", args, false).unwrap();
        assert_eq!(abc(&[Value::from(""), Value::from(3)]), Value::from(3));
        assert_eq!(
            abc(&[Value::from(""), Value::from(2), Value::from(1)]),
            Value::from(-1)
        );
        // 'aXbXc'.count('X', 2) == 1, 'añc'.count('') == 4, 'añc'.count('', -2, -1) == 2,
        // 'abc'.count('', 5) == 0, 'aaaa'.count('aa') == 2.
        assert_eq!(python_count("aXbXc", "X", Some(2), None), 1);
        assert_eq!(python_count("añc", "", None, None), 4);
        assert_eq!(python_count("añc", "", Some(-2), Some(-1)), 2);
        assert_eq!(python_count("abc", "", Some(5), None), 0);
        assert_eq!(python_count("aaaa", "aa", None, None), 2);
    }

    #[test]
    fn case_predicates_follow_python() {
        // 'ab1'.islower(), not 'Ab1'.islower(), not ''.islower(), 'AB1'.isupper(),
        // 'ǅemal'.istitle(), not 'ǅEmal'.istitle().
        assert!(only_cased("ab1", char::is_lowercase));
        assert!(!only_cased("Ab1", char::is_lowercase));
        assert!(!only_cased("", char::is_lowercase));
        assert!(!only_cased("12", char::is_uppercase));
        assert!(only_cased("AB1", char::is_uppercase));
        assert!(is_title("ǅemal Of 3Rd"));
        assert!(!is_title("ǅEmal"));
        assert_eq!(swapcase("aBç"), "AbÇ");
    }

    #[test]
    fn split_and_splitlines_follow_python() {
        // '  a  b  c '.split(None, 1) == ['a', 'b  c '], ' a b '.rsplit(None, 1) == [' a', 'b'],
        // 'a\x1cb'.split() == ['a', 'b'], ',a,'.split(',') == ['', 'a', ''],
        // 'a-b-c'.rsplit('-', 1) == ['a-b', 'c'], 'a-b-c'.rsplit('-') == ['a', 'b', 'c'].
        assert_eq!(split("  a  b  c ", None, 1, false), ["a", "b  c "]);
        assert_eq!(split(" a b ", None, 1, true), [" a", "b"]);
        assert_eq!(split(" a b ", None, -1, true), ["a", "b"]);
        assert_eq!(split("a\u{1c}b", None, -1, false), ["a", "b"]);
        assert_eq!(split(",a,", Some(","), -1, false), ["", "a", ""]);
        assert_eq!(split("a-b-c", Some("-"), 1, true), ["a-b", "c"]);
        assert_eq!(split("a-b-c", Some("-"), -1, true), ["a", "b", "c"]);
        assert_eq!(split("", None, -1, false), Vec::<&str>::new());
        assert!(python_split("a", Some(""), -1, false).is_err());
        // 'a\rb\x0bc\x85d\u2028e\r\nf\n'.splitlines() == ['a', 'b', 'c', 'd', 'e', 'f'].
        assert_eq!(
            python_splitlines("a\rb\u{0b}c\u{85}d\u{2028}e\r\nf\n", false),
            ["a", "b", "c", "d", "e", "f"]
        );
        assert_eq!(python_splitlines("a\r\nb\n", true), ["a\r\n", "b\n"]);
        assert_eq!(python_strip("\u{1c} hi\u{3000}", None, "strip"), "hi");
    }

    #[test]
    fn padding_follows_python() {
        // 'ab'.center(5) == '  ab ', 'abc'.center(6, '-') == '-abc--', 'ab'.ljust(4, '.'),
        // '-5'.zfill(4) == '-005'.
        assert_eq!(pad("ab", 5, ' ', "center"), "  ab ");
        assert_eq!(pad("abc", 6, '-', "center"), "-abc--");
        assert_eq!(pad("ab", 4, '.', "ljust"), "ab..");
        assert_eq!(pad("ab", 4, ' ', "rjust"), "  ab");
        assert_eq!(pad("abc", 2, ' ', "center"), "abc");
        assert_eq!(zfill("-5", 4), "-005");
        assert_eq!(zfill("7", 3), "007");
    }
}
