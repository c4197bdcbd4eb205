//! The grammar of `libxlu_cfg_y.y`, by recursive descent:
//!
//! ```text
//! file       := { stmt } [ assignment ]          (last one may lack an end)
//! stmt       := assignment end | end
//! end        := NEWLINE | ';'
//! assignment := IDENT ( '=' | '+=' ) value
//! value      := STRING | NUMBER | '[' nl* [ items ] ']'
//! items      := value nl* { ',' nl* value nl* } [ ',' nl* ]
//! ```
//!
//! Later settings of the same name win; `+=` appends to the previous value of
//! the same kind (string to string, list to list).

use super::lexer::{tokenize, Token, TokenKind};
use super::store::{Op, Setting, Store, Value};
use super::SyntaxError;

/// Lists nested deeper than this are refused (libxlu's bison stack would
/// overflow long before; we must not overflow ours).
const MAX_DEPTH: usize = 64;

/// Parses a whole xl.cfg text into a settings store.
pub fn parse(data: &[u8]) -> Result<Store, SyntaxError> {
    let tokens = tokenize(data)?;
    let mut p = Parser {
        toks: &tokens,
        pos: 0,
        store: Store::default(),
    };
    p.file()?;
    Ok(p.store)
}

struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
    store: Store,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn last_line(&self) -> u32 {
        self.toks.last().map_or(1, |t| t.line)
    }

    fn error_here(&self, expecting: &str) -> SyntaxError {
        match self.peek() {
            Some(t) => SyntaxError {
                line: t.line,
                near: describe(&t.kind),
                message: format!("unexpected {}, expecting {expecting}", kind_name(&t.kind)),
                likely_python: false,
            },
            None => SyntaxError {
                line: self.last_line(),
                near: String::new(),
                message: format!("unexpected end of file, expecting {expecting}"),
                likely_python: false,
            },
        }
    }

    fn file(&mut self) -> Result<(), SyntaxError> {
        while let Some(t) = self.peek() {
            match &t.kind {
                TokenKind::Newline | TokenKind::Semicolon => self.pos += 1,
                TokenKind::Ident(_) => {
                    self.assignment()?;
                    match self.peek().map(|t| &t.kind) {
                        None => return Ok(()),
                        Some(TokenKind::Newline | TokenKind::Semicolon) => self.pos += 1,
                        Some(_) => return Err(self.error_here("end of statement")),
                    }
                }
                _ => return Err(self.error_here("IDENT or end of statement")),
            }
        }
        Ok(())
    }

    fn assignment(&mut self) -> Result<(), SyntaxError> {
        let Some(Token {
            kind: TokenKind::Ident(name),
            ..
        }) = self.peek().cloned()
        else {
            return Err(self.error_here("IDENT"));
        };
        self.pos += 1;
        let op = match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Assign) => Op::Assign,
            Some(TokenKind::Append) => Op::Append,
            _ => return Err(self.error_here("+= or '='")),
        };
        self.pos += 1;
        let line = self.peek().map_or(self.last_line(), |t| t.line);
        let (value, item_lines) = self.value(0)?;
        self.store.set(Setting {
            name,
            value,
            op,
            line,
            item_lines,
        })
    }

    fn skip_newlines(&mut self) {
        while matches!(self.peek().map(|t| &t.kind), Some(TokenKind::Newline)) {
            self.pos += 1;
        }
    }

    /// One value, with the line of each item's first token when it is a
    /// list.
    fn value(&mut self, depth: usize) -> Result<(Value, Vec<u32>), SyntaxError> {
        let Some(t) = self.peek().cloned() else {
            return Err(self.error_here("STRING or NUMBER or '['"));
        };
        match t.kind {
            TokenKind::Str(s) | TokenKind::Number(s) => {
                self.pos += 1;
                Ok((Value::String(s), Vec::new()))
            }
            TokenKind::LBracket => {
                if depth >= MAX_DEPTH {
                    return Err(SyntaxError {
                        line: t.line,
                        near: "[".into(),
                        message: "lists nested too deeply".into(),
                        likely_python: false,
                    });
                }
                self.pos += 1;
                self.list(depth + 1)
            }
            _ => Err(self.error_here("STRING or NUMBER or '['")),
        }
    }

    fn list(&mut self, depth: usize) -> Result<(Value, Vec<u32>), SyntaxError> {
        let mut items = Vec::new();
        let mut lines = Vec::new();
        self.skip_newlines();
        if matches!(self.peek().map(|t| &t.kind), Some(TokenKind::RBracket)) {
            self.pos += 1;
            return Ok((Value::List(items), lines));
        }
        loop {
            lines.push(self.peek().map_or(self.last_line(), |t| t.line));
            items.push(self.value(depth)?.0);
            self.skip_newlines();
            match self.peek().map(|t| &t.kind) {
                Some(TokenKind::RBracket) => {
                    self.pos += 1;
                    return Ok((Value::List(items), lines));
                }
                Some(TokenKind::Comma) => {
                    self.pos += 1;
                    self.skip_newlines();
                    if matches!(self.peek().map(|t| &t.kind), Some(TokenKind::RBracket)) {
                        self.pos += 1;
                        return Ok((Value::List(items), lines));
                    }
                }
                _ => return Err(self.error_here("',' or ']'")),
            }
        }
    }
}

fn kind_name(k: &TokenKind) -> &'static str {
    match k {
        TokenKind::Ident(_) => "IDENT",
        TokenKind::Number(_) => "NUMBER",
        TokenKind::Str(_) => "STRING",
        TokenKind::Newline => "NEWLINE",
        TokenKind::Semicolon => "';'",
        TokenKind::Comma => "','",
        TokenKind::Assign => "'='",
        TokenKind::Append => "+=",
        TokenKind::LBracket => "'['",
        TokenKind::RBracket => "']'",
    }
}

fn describe(k: &TokenKind) -> String {
    match k {
        TokenKind::Ident(s) | TokenKind::Number(s) => s.clone(),
        TokenKind::Str(s) => format!("\"{s}\""),
        TokenKind::Newline => "<newline>".into(),
        TokenKind::Semicolon => ";".into(),
        TokenKind::Comma => ",".into(),
        TokenKind::Assign => "=".into(),
        TokenKind::Append => "+=".into(),
        TokenKind::LBracket => "[".into(),
        TokenKind::RBracket => "]".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(src: &str, key: &str) -> Option<Value> {
        parse(src.as_bytes())
            .ok()?
            .find(key)
            .map(|s| s.value.clone())
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    #[test]
    fn statements_end_at_newline_semicolon_or_eof() {
        let st = parse(b"a=1;b='x'\n\nc = \"y\"").expect("valid");
        assert_eq!(st.find("a").map(|s| &s.value), Some(&s("1")));
        assert_eq!(st.find("b").map(|s| &s.value), Some(&s("x")));
        assert_eq!(st.find("c").map(|s| s.line), Some(3));
        assert!(parse(b"a=1 b=2\n").is_err());
    }

    #[test]
    fn numbers_stay_text_until_a_key_reads_them() {
        assert_eq!(value("m = 0x1f\n", "m"), Some(s("0x1f")));
        assert_eq!(value("m = 010\n", "m"), Some(s("010")));
        assert!(parse(b"m = 1.5\n").is_err());
        assert!(parse(b"m = -1\n").is_err());
    }

    #[test]
    fn lists_nest_span_lines_and_allow_a_trailing_comma() {
        let v = value("l = [\n 'a' ,\n\n [ 1, 2 ],\n]\n", "l");
        assert_eq!(
            v,
            Some(Value::List(vec![s("a"), Value::List(vec![s("1"), s("2")])]))
        );
        assert_eq!(value("l = [ ]\n", "l"), Some(Value::List(vec![])));
        assert!(parse(b"l = [ , ]\n").is_err());
        assert!(parse(b"l = [ 1 2 ]\n").is_err());
    }

    #[test]
    fn list_items_keep_their_own_lines_through_appends() {
        let st = parse(b"l = [ 'a',\n\n  [ 1,\n 2 ], 'b' ]\nl += [\n'c' ]\n").expect("valid");
        assert_eq!(
            st.find("l").map(|s| s.item_lines.clone()),
            Some(vec![1, 3, 4, 6])
        );
    }

    #[test]
    fn later_settings_win_and_append_concatenates() {
        assert_eq!(value("a = 'x'\na = 'y'\n", "a"), Some(s("y")));
        assert_eq!(value("a = 'x'\na += 'y'\n", "a"), Some(s("xy")));
        assert_eq!(
            value("a = [1]\na += [2]\n", "a"),
            Some(Value::List(vec![s("1"), s("2")]))
        );
        assert!(parse(b"a = [1]\na += 'x'\n").is_err());
    }

    #[test]
    fn comments_need_a_newline_and_keys_are_lower_case() {
        assert!(parse(b"a = 1 # note\n").is_ok());
        assert!(parse(b"a = 1\n# note").is_err());
        let e = parse(b"a = 1\nName = 2\n").expect_err("upper case");
        assert_eq!((e.line, e.near.as_str()), (2, "Name"));
    }

    #[test]
    fn escapes_follow_libxlu() {
        assert_eq!(value(r#"a = "t\tq\"b\\""#, "a"), Some(s("t\tq\"b\\")));
        // Octal escapes vanish; hex escapes are always refused.
        assert_eq!(value(r#"a = "x\101y""#, "a"), Some(s("xy")));
        assert!(parse(br#"a = "\x41""#).is_err());
        assert!(parse(br#"a = "\q""#).is_err());
        assert!(parse(b"a = \"open\n").is_err());
    }

    #[test]
    fn python_looking_input_is_flagged() {
        let e = parse(b"memory = 1.5\n").expect_err("python");
        assert!(e.likely_python);
    }
}
