//! llama.cpp's GBNF grammars translated to llguidance's Lark dialect, rule by rule: GBNF's
//! `root` becomes Lark's `start`, literals and character classes keep their meaning exactly
//! (every character written as an escape, so nothing is reinterpreted), repetitions and groups
//! carry over as they are.

use pest::iterators::Pair;
use pest::Parser;

use crate::{Error, Result};

#[derive(pest_derive::Parser)]
#[grammar = "constrain/gbnf.pest"]
struct GbnfParser;

/// The Lark grammar that accepts what the GBNF `grammar` accepts.
pub fn to_lark(grammar: &str) -> Result<String> {
    let parsed = GbnfParser::parse(Rule::grammar, grammar)
        .map_err(|e| Error::InvalidArgument(format!("GBNF grammar: {e}")))?;
    let mut lark = String::new();
    let mut has_root = false;
    for rule in parsed.flatten().filter(|p| p.as_rule() == Rule::rule) {
        let mut parts = rule.into_inner();
        let (Some(name), Some(body)) = (parts.next(), parts.next()) else {
            continue;
        };
        has_root |= name.as_str() == "root";
        lark.push_str(&rule_name(name.as_str()));
        lark.push_str(": ");
        lark.push_str(&alternatives(body)?);
        lark.push('\n');
    }
    if !has_root {
        return Err(Error::InvalidArgument(
            "GBNF grammar: no `root` rule (the rule the text must match)".into(),
        ));
    }
    lark.push_str(&format!("start: {}\n", rule_name("root")));
    Ok(lark)
}

/// A GBNF name as a Lark rule name: lower case, `-` as `_`, and a prefix that keeps it apart
/// from Lark's own `start` and from names that differ only in case.
fn rule_name(name: &str) -> String {
    let mut out = String::from("g_");
    for c in name.chars() {
        match c {
            '-' => out.push('_'),
            c if c.is_ascii_uppercase() => {
                out.push('u');
                out.push(c.to_ascii_lowercase());
            }
            c => out.push(c),
        }
    }
    out
}

fn alternatives(pair: Pair<'_, Rule>) -> Result<String> {
    let alts = pair
        .into_inner()
        .map(sequence)
        .collect::<Result<Vec<_>>>()?;
    Ok(alts.join(" | "))
}

fn sequence(pair: Pair<'_, Rule>) -> Result<String> {
    let items = pair.into_inner().map(item).collect::<Result<Vec<_>>>()?;
    Ok(if items.is_empty() {
        // An empty alternative matches the empty text.
        "\"\"".to_string()
    } else {
        items.join(" ")
    })
}

fn item(pair: Pair<'_, Rule>) -> Result<String> {
    let mut parts = pair.into_inner();
    let primary = parts
        .next()
        .ok_or_else(|| Error::InvalidArgument("GBNF grammar: an empty item".into()))?;
    let mut out = match primary.as_rule() {
        Rule::literal => {
            let text: String = primary
                .into_inner()
                .map(|c| literal_char(c))
                .collect::<Result<_>>()?;
            // A JSON string is a Lark string literal with the same escapes.
            serde_json::to_string(&text).map_err(|e| Error::Internal(e.to_string()))?
        }
        Rule::class => class(primary)?,
        Rule::any => "/(?s:.)/".to_string(),
        Rule::group => {
            let inner = primary
                .into_inner()
                .next()
                .ok_or_else(|| Error::InvalidArgument("GBNF grammar: an empty group".into()))?;
            format!("({})", alternatives(inner)?)
        }
        Rule::reference => rule_name(primary.as_str()),
        other => {
            return Err(Error::Internal(format!(
                "GBNF grammar: unexpected {other:?}"
            )))
        }
    };
    if let Some(rep) = parts.next() {
        let rep = rep
            .into_inner()
            .next()
            .ok_or_else(|| Error::Internal("GBNF grammar: an empty repetition".into()))?;
        match rep.as_rule() {
            Rule::star => out.push('*'),
            Rule::plus => out.push('+'),
            Rule::optional => out.push('?'),
            _ => {
                let mut min = None;
                let mut comma = false;
                let mut max = None;
                for p in rep.into_inner() {
                    match p.as_rule() {
                        Rule::comma => comma = true,
                        Rule::number if !comma => min = Some(p.as_str().to_string()),
                        Rule::number => max = Some(p.as_str().to_string()),
                        _ => {}
                    }
                }
                let min = min.unwrap_or_else(|| "0".into());
                out = match (comma, max) {
                    (false, _) => format!("{out}{{{min}}}"),
                    (true, Some(max)) => format!("{out}{{{min},{max}}}"),
                    // `{m,}`: m copies, then any number more.
                    (true, None) => format!("{out}{{{min}}} {out}*"),
                };
            }
        }
    }
    Ok(out)
}

/// One character of a literal or a class: itself, or what its escape stands for.
fn literal_char(pair: Pair<'_, Rule>) -> Result<char> {
    let inner = pair
        .into_inner()
        .next()
        .ok_or_else(|| Error::Internal("GBNF grammar: an empty character".into()))?;
    let s = inner.as_str();
    if inner.as_rule() != Rule::escape {
        return s
            .chars()
            .next()
            .ok_or_else(|| Error::Internal("GBNF grammar: an empty character".into()));
    }
    let code = |hex: &str| {
        u32::from_str_radix(hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| Error::InvalidArgument(format!("GBNF grammar: bad escape {s}")))
    };
    let body = &s[1..];
    Ok(match body.chars().next() {
        Some('x' | 'u' | 'U') if body.len() > 1 => code(&body[1..])?,
        Some('n') => '\n',
        Some('r') => '\r',
        Some('t') => '\t',
        Some(c) => c,
        None => return Err(Error::InvalidArgument("GBNF grammar: a lone `\\`".into())),
    })
}

/// A character class as a Lark regex, every member written as `\x{…}`.
fn class(pair: Pair<'_, Rule>) -> Result<String> {
    let hex = |c: char| format!("\\x{{{:x}}}", c as u32);
    let mut out = String::from("/[");
    for part in pair.into_inner() {
        match part.as_rule() {
            Rule::negated => out.push('^'),
            Rule::class_item => {
                let Some(member) = part.into_inner().next() else {
                    continue;
                };
                if member.as_rule() == Rule::range {
                    let mut ends = member.into_inner();
                    let (Some(a), Some(b)) = (ends.next(), ends.next()) else {
                        continue;
                    };
                    out.push_str(&format!(
                        "{}-{}",
                        hex(literal_char(a)?),
                        hex(literal_char(b)?)
                    ));
                } else {
                    out.push_str(&hex(literal_char(member)?));
                }
            }
            _ => {}
        }
    }
    out.push_str("]/");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_literals_classes_and_repetitions_translate() {
        let lark = to_lark(
            "root ::= greeting (\" \" name)? [!.]{1,3}\n\
             greeting ::= \"hi\" | \"hello\\n\"  # a comment\n\
             name ::=\n  [A-Z] [a-z-]* | \"x\\x41\"\n\
             empty ::= | \"a\"+\n",
        )
        .expect("translates");
        assert_eq!(
            lark,
            "g_root: g_greeting (\" \" g_name)? /[\\x{21}\\x{2e}]/{1,3}\n\
             g_greeting: \"hi\" | \"hello\\n\"\n\
             g_name: /[\\x{41}-\\x{5a}]/ /[\\x{61}-\\x{7a}\\x{2d}]/* | \"xA\"\n\
             g_empty: \"\" | \"a\"+\n\
             start: g_root\n"
        );
    }

    #[test]
    fn a_grammar_without_root_or_with_bad_syntax_is_an_error() {
        assert!(to_lark("a ::= \"x\"\n").is_err());
        assert!(to_lark("root ::= \"unclosed\n").is_err());
        assert!(to_lark("root ::= (\"a\"\n").is_err());
    }
}
