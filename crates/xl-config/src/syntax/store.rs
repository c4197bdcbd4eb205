//! libxlu's settings store and typed getters (`libxlu_cfg.c`): the last
//! setting of a name wins, values are strings or lists, and numbers are
//! converted only when a key is read, with libxlu's warnings.

use super::SyntaxError;

/// A setting's value: libxlu keeps numbers as strings too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    String(String),
    List(Vec<Value>),
}

/// `=` or `+=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Assign,
    Append,
}

/// One `name = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    pub value: Value,
    pub op: Op,
    /// The line the value starts on.
    pub line: u32,
    /// For a list, the line of each item's first token (libxlu keeps a
    /// location per value and names it in per-item warnings).
    pub item_lines: Vec<u32>,
}

/// Why a getter found nothing usable (libxlu's ESRCH / EINVAL / ERANGE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetError {
    /// The key is not set.
    Absent,
    /// The key is set but has the wrong shape or is not a number.
    Invalid,
}

/// All settings of one file (plus command-line overrides), in order.
#[derive(Debug, Clone, Default)]
pub struct Store {
    settings: Vec<Setting>,
    /// Index of the setting that counts for each name (the last one).
    latest: std::collections::HashMap<String, usize>,
    /// Warnings printed by getters, in libxlu's wording (without file name
    /// prefix handling: each is a complete line).
    warnings: std::cell::RefCell<Vec<String>>,
    /// The name used in messages (the file name as given).
    pub source: String,
    /// Whether C's `errno` would still be ERANGE from the last number xl
    /// parsed: libxlu clears errno before each conversion, and xl's vif
    /// rate parser tests errno without clearing it, so a stale ERANGE from
    /// an earlier key makes a valid `rate=` fail there.
    stale_erange: std::cell::Cell<bool>,
}

impl Store {
    pub(crate) fn set(&mut self, mut s: Setting) -> Result<(), SyntaxError> {
        if s.op == Op::Append {
            if let Some(&i) = self.latest.get(&s.name) {
                // Only the newest setting of a name is ever read, so the
                // previous value can be moved (libxlu moves lists too);
                // appending in place keeps long `+=` chains linear.
                let prev = &mut self.settings[i].value;
                match (prev, &mut s.value) {
                    (Value::String(a), Value::String(b)) => {
                        let mut joined = std::mem::take(a);
                        joined.push_str(b);
                        *b = joined;
                    }
                    (Value::List(a), Value::List(b)) => {
                        let mut joined = std::mem::take(a);
                        joined.append(b);
                        *b = joined;
                        let mut lines = std::mem::take(&mut self.settings[i].item_lines);
                        lines.append(&mut s.item_lines);
                        s.item_lines = lines;
                    }
                    _ => {
                        return Err(SyntaxError {
                            line: s.line,
                            near: s.name.clone(),
                            message: "can't add [list] to \"string\" or vice versa".into(),
                            likely_python: false,
                        })
                    }
                }
            }
        }
        self.latest.insert(s.name.clone(), self.settings.len());
        self.settings.push(s);
        Ok(())
    }

    /// The setting that counts for `name` (the last one).
    pub fn find(&self, name: &str) -> Option<&Setting> {
        self.latest.get(name).and_then(|&i| self.settings.get(i))
    }

    /// Every setting, in file order. A setting later extended with `+=`
    /// has had its value moved into the newer one (only the newest setting
    /// of a name is ever read).
    pub fn settings(&self) -> &[Setting] {
        &self.settings
    }

    pub(crate) fn warn(&self, msg: String) {
        self.warnings.borrow_mut().push(msg);
    }

    /// Takes the warnings collected so far.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.borrow_mut())
    }

    fn atom(&self, name: &str, quiet: bool) -> Result<&Setting, GetError> {
        let s = self.find(name).ok_or(GetError::Absent)?;
        match s.value {
            Value::String(_) => Ok(s),
            Value::List(_) => {
                if !quiet {
                    self.warn(format!(
                        "{}:{}: warning: parameter `{name}' is a list but should be a single value",
                        self.source, s.line
                    ));
                }
                Err(GetError::Invalid)
            }
        }
    }

    /// `xlu_cfg_get_string`.
    pub fn get_string(&self, name: &str, quiet: bool) -> Result<&str, GetError> {
        match &self.atom(name, quiet)?.value {
            Value::String(v) => Ok(v),
            Value::List(_) => Err(GetError::Invalid),
        }
    }

    /// `xlu_cfg_get_string`, absent or wrong shape as `None`.
    pub fn string(&self, name: &str) -> Option<String> {
        self.get_string(name, false).ok().map(str::to_owned)
    }

    /// `xlu_cfg_get_bounded_long`: `strtol(.., 0)` over the whole string.
    pub fn get_bounded_long(
        &self,
        name: &str,
        min: i64,
        max: i64,
        quiet: bool,
    ) -> Result<i64, GetError> {
        let s = self.atom(name, quiet)?;
        let line = s.line;
        let Value::String(text) = &s.value else {
            return Err(GetError::Invalid);
        };
        if s.op == Op::Append {
            if !quiet {
                self.warn(format!(
                    "{}:{line}: warning: can't use += with numbers for parameter `{name}'",
                    self.source
                ));
            }
            return Err(GetError::Invalid);
        }
        self.stale_erange.set(false);
        let l = match strtol(text) {
            Strtol::Ok(l) => l,
            Strtol::Range => {
                self.stale_erange.set(true);
                if !quiet {
                    self.warn(format!(
                        "{}:{line}: warning: parameter `{name}' could not be parsed as a number: Numerical result out of range",
                        self.source
                    ));
                }
                return Err(GetError::Invalid);
            }
            Strtol::Invalid => {
                if !quiet {
                    self.warn(format!(
                        "{}:{line}: warning: parameter `{name}' is not a valid number",
                        self.source
                    ));
                }
                return Err(GetError::Invalid);
            }
        };
        if l < min {
            if !quiet {
                self.warn(format!(
                    "{}:{line}: warning: value `{l}' is smaller than minimum bound '{min}'",
                    self.source
                ));
            }
            return Err(GetError::Invalid);
        }
        if l > max {
            if !quiet {
                self.warn(format!(
                    "{}:{line}: warning: value `{l}' is greater than maximum bound '{max}'",
                    self.source
                ));
            }
            return Err(GetError::Invalid);
        }
        Ok(l)
    }

    /// `xlu_cfg_get_long`.
    pub fn get_long(&self, name: &str, quiet: bool) -> Result<i64, GetError> {
        self.get_bounded_long(name, i64::MIN, i64::MAX, quiet)
    }

    /// `xlu_cfg_get_long`, failures as `None` (after the warning).
    pub fn long(&self, name: &str) -> Option<i64> {
        self.get_long(name, false).ok()
    }

    /// `xlu_cfg_get_defbool`: any number, non-zero is true.
    pub fn defbool(&self, name: &str) -> Option<bool> {
        self.long(name).map(|l| l != 0)
    }

    /// `xlu_cfg_get_list`.
    pub fn get_list(&self, name: &str, quiet: bool) -> Result<&[Value], GetError> {
        let s = self.find(name).ok_or(GetError::Absent)?;
        match &s.value {
            Value::List(items) => Ok(items),
            Value::String(_) => {
                if !quiet {
                    self.warn(format!(
                        "{}:{}: warning: parameter `{name}' is a single value but should be a list",
                        self.source, s.line
                    ));
                }
                Err(GetError::Invalid)
            }
        }
    }

    /// See `stale_erange`.
    pub fn errno_is_erange(&self) -> bool {
        self.stale_erange.get()
    }

    /// The line a key was set on (for error messages).
    pub fn line_of(&self, name: &str) -> Option<u32> {
        self.find(name).map(|s| s.line)
    }
}

/// String items of a list, stopping at the first non-string item
/// (`xlu_cfg_get_listitem` returns NULL there and xl's loops stop).
pub fn string_items(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map_while(|v| match v {
            Value::String(s) => Some(s.as_str()),
            Value::List(_) => None,
        })
        .collect()
}

enum Strtol {
    Ok(i64),
    Range,
    Invalid,
}

/// C's `strtol(s, &end, 0)` requiring `*end == 0`: leading blanks, a sign,
/// `0x` hex, leading-0 octal, decimal.
fn strtol(s: &str) -> Strtol {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if (t.starts_with("0x") || t.starts_with("0X"))
        && t[2..].chars().next().is_some_and(|c| c.is_ascii_hexdigit())
    {
        (16, &t[2..])
    } else if t.starts_with('0') && t.len() > 1 {
        (8, &t[1..])
    } else {
        (10, t)
    };
    if digits.is_empty() && radix != 8 {
        return Strtol::Invalid;
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return Strtol::Invalid;
    }
    match i128::from_str_radix(if digits.is_empty() { "0" } else { digits }, radix) {
        Ok(v) => {
            let v = if neg { -v } else { v };
            i64::try_from(v).map_or(Strtol::Range, Strtol::Ok)
        }
        Err(_) => Strtol::Range,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtol_accepts_c_bases() {
        assert!(matches!(strtol("0x10"), Strtol::Ok(16)));
        assert!(matches!(strtol("010"), Strtol::Ok(8)));
        assert!(matches!(strtol("0"), Strtol::Ok(0)));
        assert!(matches!(strtol(" -12"), Strtol::Ok(-12)));
        assert!(matches!(strtol("12k"), Strtol::Invalid));
        assert!(matches!(strtol(""), Strtol::Invalid));
        assert!(matches!(strtol("08"), Strtol::Invalid));
        assert!(matches!(strtol("99999999999999999999"), Strtol::Range));
    }
}
