//! The xl.cfg grammar as libxlu accepts it: tokens ([`lexer`]), settings
//! ([`parser`]) and the settings store with libxlu's typed getters
//! ([`store`]).

pub mod lexer;
pub mod parser;
pub mod store;

pub use parser::parse;
pub use store::{Op, Setting, Store, Value};

/// A lexical or grammar error at a line of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: u32,
    /// The offending text (empty at end of input or at a newline).
    pub near: String,
    /// What was wrong, in libxlu's words.
    pub message: String,
    /// libxlu prints a hint that the file may be Python (xm syntax).
    pub likely_python: bool,
}
