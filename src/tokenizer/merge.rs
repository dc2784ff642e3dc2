//! The merge loop both tokenizer models share, as llama.cpp runs it (`llm_tokenizer_spm` and
//! `llm_tokenizer_bpe`): start from single characters, keep every adjacent pair the model ranks in
//! a priority queue, and repeatedly merge the best pair (of equals, the leftmost) until no ranked
//! pair is left. The models differ only in how they rank a pair: SentencePiece by the score of
//! the merged token, BPE by the position of the pair in the merge list.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Range;

/// One symbol: a byte range of the text; `len == 0` once merged into its left neighbour.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A possible merge of `symbols[left]` with `symbols[right]`.
struct Candidate<P> {
    priority: P,
    left: usize,
    right: usize,
    /// Byte length of the merged text when the candidate was made. A symbol only ever grows to
    /// the right, so the pair is still the same two symbols exactly when both are unmerged and
    /// their lengths still add up to this (llama.cpp's staleness check, which compares texts).
    size: usize,
}

impl<P: Ord> PartialEq for Candidate<P> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<P: Ord> Eq for Candidate<P> {}
impl<P: Ord> PartialOrd for Candidate<P> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<P: Ord> Ord for Candidate<P> {
    /// The max-heap pops the highest priority first, and of equal priorities the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Merges the characters of `text` as long as `priority(left, right)` ranks an adjacent pair of
/// symbols (given as byte ranges of `text`; `None`: never merge them), and appends the byte ranges
/// of the final symbols to `out`, in order.
pub(crate) fn merge_symbols<P: Ord>(
    text: &str,
    mut priority: impl FnMut(Range<usize>, Range<usize>) -> Option<P>,
    out: &mut Vec<Range<usize>>,
) {
    if text.is_empty() {
        return;
    }
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((start, _)) = chars.next() {
        let end = chars.peek().map_or(text.len(), |&(next, _)| next);
        let k = symbols.len();
        symbols.push(Symbol {
            start,
            len: end - start,
            prev: k.checked_sub(1),
            next: (end < text.len()).then_some(k + 1),
        });
    }

    let mut queue = BinaryHeap::new();
    let mut consider = |queue: &mut BinaryHeap<Candidate<P>>, symbols: &[Symbol], left, right| {
        let (l, r): (Symbol, Symbol) = (symbols[left], symbols[right]);
        let left_range = l.start..l.start + l.len;
        let right_range = r.start..r.start + r.len;
        if let Some(priority) = priority(left_range, right_range) {
            queue.push(Candidate {
                priority,
                left,
                right,
                size: l.len + r.len,
            });
        }
    };
    for i in 1..symbols.len() {
        consider(&mut queue, &symbols, i - 1, i);
    }

    while let Some(c) = queue.pop() {
        let (l, r) = (symbols[c.left], symbols[c.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != c.size {
            continue;
        }
        symbols[c.left].len += r.len;
        symbols[c.right].len = 0;
        symbols[c.left].next = r.next;
        if let Some(n) = r.next {
            symbols[n].prev = Some(c.left);
        }
        if let Some(p) = symbols[c.left].prev {
            consider(&mut queue, &symbols, p, c.left);
        }
        if let Some(n) = symbols[c.left].next {
            consider(&mut queue, &symbols, c.left, n);
        }
    }

    let mut current = Some(0);
    while let Some(i) = current {
        let s = symbols[i];
        out.push(s.start..s.start + s.len);
        current = s.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Reverse;

    fn pieces<'a>(text: &'a str, ranks: &[(&str, &str)]) -> Vec<&'a str> {
        let mut out = Vec::new();
        merge_symbols(
            text,
            |l, r| {
                ranks
                    .iter()
                    .position(|&(a, b)| a == &text[l.clone()] && b == &text[r.clone()])
                    .map(Reverse)
            },
            &mut out,
        );
        out.into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn merges_by_rank_then_leftmost() {
        // "b c" outranks "a b", so "bc" forms first and "a b" never applies.
        assert_eq!(pieces("abc", &[("b", "c"), ("a", "b")]), ["a", "bc"]);
        assert_eq!(pieces("abc", &[("a", "b"), ("b", "c")]), ["ab", "c"]);
        // Equal pairs: the leftmost first, so "aaa" is "aa" + "a".
        assert_eq!(pieces("aaa", &[("a", "a")]), ["aa", "a"]);
        assert_eq!(pieces("aaaa", &[("a", "a"), ("aa", "aa")]), ["aaaa"]);
        // Multi-byte characters are symbols of their own.
        assert_eq!(pieces("éé", &[("é", "é")]), ["éé"]);
        assert_eq!(pieces("xé", &[]), ["x", "é"]);
        assert!(pieces("", &[("a", "b")]).is_empty());
    }
}
