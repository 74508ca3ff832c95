//! Pre-tokenizing: the pieces a text is cut into before the byte-pair merge, by OpenAI's
//! patterns for o200k_base and cl100k_base. ASCII text, nearly every prompt, is cut by hand
//! here, piece for piece what the pattern cuts; any other text by the pattern itself
//! (fancy-regex, as tiktoken does), compiled once per process on first use.

use std::sync::OnceLock;

use fancy_regex::Regex;

/// OpenAI's o200k_base pre-tokenizer pattern.
const O200K_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+(?!\S)",
    r"|\s+",
);

/// OpenAI's cl100k_base pre-tokenizer pattern.
const CL100K_PATTERN: &str = concat!(
    r"'(?i:[sdmt]|ll|ve|re)",
    r"|[^\r\n\p{L}\p{N}]?+\p{L}++",
    r"|\p{N}{1,3}+",
    r"| ?[^\s\p{L}\p{N}]++[\r\n]*+",
    r"|\s++$",
    r"|\s*[\r\n]",
    r"|\s+(?!\S)",
    r"|\s",
);

/// Which pattern cuts the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pattern {
    O200k,
    Cl100k,
}

impl Pattern {
    /// Calls `piece` with each piece of `text`, in order. `Err` (nothing more is cut) only
    /// when the pattern's backtracking gives up on a non-ASCII text; the pieces before it
    /// were given.
    pub(super) fn pieces(self, text: &str, mut piece: impl FnMut(&[u8])) -> Result<(), usize> {
        let bytes = text.as_bytes();
        if text.is_ascii() {
            let mut at = 0;
            while at < bytes.len() {
                let end = match self {
                    Pattern::O200k => o200k_ascii(bytes, at),
                    Pattern::Cl100k => cl100k_ascii(bytes, at),
                };
                piece(&bytes[at..end]);
                at = end;
            }
            return Ok(());
        }
        let mut at = 0;
        for found in self.regex().find_iter(text) {
            match found {
                Ok(m) => {
                    piece(m.as_str().as_bytes());
                    at = m.end();
                }
                Err(_) => return Err(at),
            }
        }
        Ok(())
    }

    #[allow(
        clippy::expect_used,
        reason = "the patterns are constants, compiled by the tests"
    )]
    fn regex(self) -> &'static Regex {
        static O200K: OnceLock<Regex> = OnceLock::new();
        static CL100K: OnceLock<Regex> = OnceLock::new();
        match self {
            Pattern::O200k => {
                O200K.get_or_init(|| Regex::new(O200K_PATTERN).expect("the o200k pattern compiles"))
            }
            Pattern::Cl100k => CL100K
                .get_or_init(|| Regex::new(CL100K_PATTERN).expect("the cl100k pattern compiles")),
        }
    }
}

/// `\s` on ASCII (Unicode's White_Space: tab, line feed, vertical tab, form feed, carriage
/// return, space).
fn space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

fn newline(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}

/// `[^\s\p{L}\p{N}]` on ASCII.
fn mark(b: u8) -> bool {
    !space(b) && !b.is_ascii_alphanumeric()
}

/// The end of a run of bytes from `at` for which `keep` holds.
fn run(s: &[u8], mut at: usize, keep: impl Fn(u8) -> bool) -> usize {
    while at < s.len() && keep(s[at]) {
        at += 1;
    }
    at
}

/// Where the letters of a word start when a piece at `at` is one: at `at`, or after one
/// byte that is none of `\r`, `\n`, a letter or a digit (`[^\r\n\p{L}\p{N}]?`).
fn word_start(s: &[u8], at: usize) -> Option<usize> {
    let b = s[at];
    if b.is_ascii_alphabetic() {
        Some(at)
    } else if !newline(b)
        && !b.is_ascii_digit()
        && s.get(at + 1).is_some_and(u8::is_ascii_alphabetic)
    {
        Some(at + 1)
    } else {
        None
    }
}

/// Where `' ?[^\s\p{L}\p{N}]+` starts its marks at `at`, if it matches there.
fn marks_start(s: &[u8], at: usize) -> Option<usize> {
    if s[at] == b' ' && s.get(at + 1).copied().is_some_and(mark) {
        Some(at + 1)
    } else if mark(s[at]) {
        Some(at)
    } else {
        None
    }
}

/// The end of the whitespace piece at `at` (`s[at]` is whitespace) for the patterns' tails,
/// which both share: up to the run's last newline if it has one, else all of a run that ends
/// the text, else the run but its last byte (the last one goes with the next word), else the
/// one byte. `newline_first`: o200k tries the newline rule before the end of text; cl100k
/// (`\s++$`) after.
fn space_end(s: &[u8], at: usize, newline_first: bool) -> usize {
    let end = run(s, at, space);
    let last_newline = s[at..end].iter().rposition(|&b| newline(b));
    if !newline_first && end == s.len() {
        return end;
    }
    if let Some(k) = last_newline {
        return at + k + 1;
    }
    if end == s.len() {
        end
    } else if end - at >= 2 {
        end - 1
    } else {
        at + 1
    }
}

/// The contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`, any case) at `at`, if any:
/// its end.
fn contraction(s: &[u8], at: usize) -> Option<usize> {
    if s.get(at) != Some(&b'\'') {
        return None;
    }
    let lower = |i: usize| s.get(at + i).map(u8::to_ascii_lowercase);
    match (lower(1), lower(2)) {
        (Some(b's' | b't' | b'm' | b'd'), _) => Some(at + 2),
        (Some(b'r'), Some(b'e')) | (Some(b'v'), Some(b'e')) | (Some(b'l'), Some(b'l')) => {
            Some(at + 3)
        }
        _ => None,
    }
}

/// The end of the o200k_base piece of ASCII `s` that starts at `at`.
fn o200k_ascii(s: &[u8], at: usize) -> usize {
    if let Some(letters) = word_start(s, at) {
        // `[A-Z]*[a-z]+` or `[A-Z]+[a-z]*`, then a contraction.
        let upper = run(s, letters, |b| b.is_ascii_uppercase());
        let end = run(s, upper, |b| b.is_ascii_lowercase());
        return contraction(s, end).unwrap_or(end);
    }
    if s[at].is_ascii_digit() {
        return run(s, at, |b| b.is_ascii_digit()).min(at + 3);
    }
    if let Some(marks) = marks_start(s, at) {
        let end = run(s, marks, mark);
        return run(s, end, |b| newline(b) || b == b'/');
    }
    space_end(s, at, true)
}

/// The end of the cl100k_base piece of ASCII `s` that starts at `at`.
fn cl100k_ascii(s: &[u8], at: usize) -> usize {
    if let Some(end) = contraction(s, at) {
        return end;
    }
    if let Some(letters) = word_start(s, at) {
        return run(s, letters, |b| b.is_ascii_alphabetic());
    }
    if s[at].is_ascii_digit() {
        return run(s, at, |b| b.is_ascii_digit()).min(at + 3);
    }
    if let Some(marks) = marks_start(s, at) {
        let end = run(s, marks, mark);
        return run(s, end, newline);
    }
    space_end(s, at, false)
}
