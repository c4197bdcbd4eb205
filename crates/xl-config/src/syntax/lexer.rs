//! The xl.cfg lexer, token for token as libxlu's flex scanner
//! (`libxlu_cfg_l.l`) splits the input.

use super::SyntaxError;

/// One token and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// `[a-z][._0-9a-z]*` (lower case only, as libxlu).
    Ident(String),
    /// `[0-9][0-9a-fx]*`, kept as text: libxlu converts numbers only when a
    /// key is read (`strtol(.., 0)`), so `0x10` and `010` stay strings here.
    Number(String),
    /// A quoted string, escapes already decoded.
    Str(String),
    Newline,
    Semicolon,
    Comma,
    Assign,
    Append,
    LBracket,
    RBracket,
}

/// Characters that make libxlu suspect Python (it then prints a hint).
fn looks_like_python(c: u8) -> bool {
    matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b':')
}

/// Splits `data` into tokens; the first lexical error stops the scan
/// (libxlu goes on scanning but the parse fails anyway).
pub fn tokenize(data: &[u8]) -> Result<Vec<Token>, SyntaxError> {
    let mut out = Vec::new();
    let mut i = 0usize;
    let mut line: u32 = 1;
    while i < data.len() {
        let c = data[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' => {
                i += 1;
                continue;
            }
            b'\n' => {
                i += 1;
                TokenKind::Newline
            }
            b'#' => {
                // `#.*\n`: a comment must end with a newline; one at the very
                // end of the file is a lexical error in libxlu.
                match data[i..].iter().position(|&b| b == b'\n') {
                    Some(n) => {
                        i += n + 1;
                        TokenKind::Newline
                    }
                    None => {
                        return Err(lexical(
                            data,
                            i,
                            line,
                            "a comment must end with a newline (xl refuses one at the very end of the file)",
                            false,
                        ))
                    }
                }
            }
            b';' => {
                i += 1;
                TokenKind::Semicolon
            }
            b',' => {
                i += 1;
                TokenKind::Comma
            }
            b'[' => {
                i += 1;
                TokenKind::LBracket
            }
            b']' => {
                i += 1;
                TokenKind::RBracket
            }
            b'=' => {
                i += 1;
                TokenKind::Assign
            }
            b'+' if data.get(i + 1) == Some(&b'=') => {
                i += 2;
                TokenKind::Append
            }
            b'a'..=b'z' => {
                i += 1;
                while i < data.len() && matches!(data[i], b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_') {
                    i += 1;
                }
                TokenKind::Ident(text(&data[start..i]))
            }
            b'0'..=b'9' => {
                i += 1;
                while i < data.len() && matches!(data[i], b'0'..=b'9' | b'a'..=b'f' | b'x') {
                    i += 1;
                }
                TokenKind::Number(text(&data[start..i]))
            }
            b'"' | b'\'' => {
                let (raw_end, s) = quoted(data, i, line)?;
                i = raw_end;
                TokenKind::Str(s)
            }
            _ => {
                return Err(lexical(
                    data,
                    i,
                    line,
                    "unexpected character",
                    looks_like_python(c),
                ))
            }
        };
        let tok_line = line;
        if kind == TokenKind::Newline {
            line = line.saturating_add(1);
        }
        out.push(Token {
            kind,
            line: tok_line,
        });
    }
    Ok(out)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The text libxlu quotes in a lexical error: from the bad character to the
/// next blank.
fn lexical(data: &[u8], at: usize, line: u32, msg: &str, python: bool) -> SyntaxError {
    let end = data[at..]
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t' | b'\n'))
        .map_or(data.len(), |n| at + n);
    SyntaxError {
        line,
        near: text(&data[at..end]),
        message: msg.to_string(),
        likely_python: python,
    }
}

/// Scans a quoted string starting at `at`; returns the index after the closing
/// quote and the decoded contents. Double-quoted strings may contain `\"`;
/// single-quoted ones end at the next `'`. Neither may span lines.
fn quoted(data: &[u8], at: usize, line: u32) -> Result<(usize, String), SyntaxError> {
    let q = data[at];
    let mut j = at + 1;
    loop {
        match data.get(j) {
            None | Some(b'\n') => {
                return Err(lexical(data, at, line, "unterminated string", false));
            }
            Some(&b) if b == q => break,
            // libxl strings are C strings: xl itself aborts on a NUL here.
            Some(0) => return Err(lexical(data, at, line, "NUL byte in quoted string", false)),
            Some(b'\\') if q == b'"' => {
                if matches!(data.get(j + 1), None | Some(b'\n')) {
                    return Err(lexical(data, at, line, "unterminated string", false));
                }
                j += 2;
            }
            Some(_) => j += 1,
        }
    }
    let raw = &data[at + 1..j];
    let decoded = dequote(raw).map_err(|msg| SyntaxError {
        line,
        near: text(&data[at..=j]),
        message: msg.to_string(),
        likely_python: false,
    })?;
    Ok((j + 1, decoded))
}

/// libxlu's `xlu__cfgl_dequote`, quirks included (see the numeric escapes).
fn dequote(raw: &[u8]) -> Result<String, &'static str> {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut p = 0usize;
    while p < raw.len() {
        let c = raw[p];
        p += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&nc) = raw.get(p) else {
            return Err("invalid character after backlash in quoted string");
        };
        p += 1;
        match nc {
            b'"' | b'\'' | b'\\' => out.push(nc),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'x' => {
                // libxlu skips a character after the `x` and then demands
                // more than two digits from a two-character window, so
                // every `\x` escape is rejected.
                return Err(
                    "invalid digit after backslash hexnumerical character escape in quoted string",
                );
            }
            b'0'..=b'7' => {
                // libxlu reads up to three *decimal* digits after the first
                // one, needs at least two, and then emits nothing: the
                // escape disappears from the string. Mirror that.
                let used = decimal_digits(&raw[p..], 3);
                if used <= 1 {
                    return Err(
                        "invalid digit after backslash octalnumerical character escape in quoted string",
                    );
                }
                p += used;
            }
            _ => return Err("invalid character after backlash in quoted string"),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// How many leading decimal digits `s` has, looking at most `max` bytes.
fn decimal_digits(s: &[u8], max: usize) -> usize {
    s.iter()
        .take(max)
        .take_while(|b| b.is_ascii_digit())
        .count()
}
