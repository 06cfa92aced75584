//! The text of a policy's rules, read into a small tree of named items.
//!
//! Consul decodes rules with HCL 1, which is more lenient than HCL 2: several
//! attributes may share a line (`service "web" { policy = "write" intentions
//! = "read" }` is in Consul's own tests), blocks may follow each other on one
//! line (the HTTP API docs send rules that way), and a text that opens with
//! `{` is JSON. `hcl-rs` speaks HCL 2 and refuses both of those layouts, and
//! its recursive parser overflows the stack on deeply nested input, so this
//! module reads the subset of HCL 1 that rules use itself, with nesting
//! bounded by [`MAX_DEPTH`]:
//!
//! - items are `key = value`, `key: value`, or `key label... { body }`
//!   (a block with labels nests an object per label, as HCL 1 does);
//!   keys and labels are identifiers or quoted strings; commas and newlines
//!   between items are optional;
//! - values are quoted strings, `{ body }` objects and `[ ... ]` lists;
//!   numbers, booleans and bare words are read only to be refused by name;
//! - comments are `#`, `//` and `/* */`; heredocs are refused (no rule needs
//!   one);
//! - strings take the escapes of JSON and HCL (`\uXXXX` with surrogate
//!   pairs, `\UXXXXXXXX`); `${` is literal text, as HCL 1 leaves it.
//!
//! Meaning (which keys are rule kinds, which values are access levels) is
//! for [`super::rules`].

use std::fmt;

/// How deep objects and lists may nest. The deepest form Consul's rules take
/// is JSON's `{"service": [{"web": {"policy": "read"}}]}`: four levels.
pub const MAX_DEPTH: usize = 6;

/// Where something is in the text, for error messages (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.col)
    }
}

/// A value in the tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Obj(Vec<Item>),
    List(Vec<(Pos, Value)>),
    /// A number, boolean, null or bare word: named so that errors can say
    /// what was found where a string belonged.
    Other(String),
}

impl Value {
    /// What this value is, for "expected a string, found ..." messages.
    pub fn describe(&self) -> String {
        match self {
            Value::Str(_) => "a string".into(),
            Value::Obj(_) => "an object".into(),
            Value::List(_) => "a list".into(),
            Value::Other(what) => what.clone(),
        }
    }
}

/// One `key = value` or `key "label" { ... }` item, in text order.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub key: String,
    pub pos: Pos,
    pub value: Value,
    pub value_pos: Pos,
}

/// Reads `text` into its top-level items: the body of an HCL file, or the
/// members of a JSON object when the text opens with `{`.
pub fn parse(text: &str) -> Result<Vec<Item>, String> {
    let mut p = Parser {
        src: text,
        at: 0,
        line: 1,
        col: 1,
    };
    p.skip_trivia()?;
    let open = p.pos();
    if p.peek() == Some('{') {
        p.bump();
        let items = p.body(1, Some(open))?;
        p.skip_trivia()?;
        if let Some(c) = p.peek() {
            return Err(p.err_at(
                p.pos(),
                format!("unexpected {} after the rules' closing }}", show(c)),
            ));
        }
        return Ok(items);
    }
    p.body(0, None)
}

struct Parser<'a> {
    src: &'a str,
    at: usize,
    line: u32,
    col: u32,
}

fn show(c: char) -> String {
    if c == '\n' {
        "a line break".into()
    } else {
        format!("{c:?}")
    }
}

fn ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.')
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.at..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.src[self.at..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn err_at(&self, pos: Pos, what: String) -> String {
        format!("{what} ({pos})")
    }

    fn depth_check(&self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(self.err_at(
                self.pos(),
                format!("rules nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), String> {
        loop {
            match (self.peek(), self.peek2()) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('#'), _) | (Some('/'), Some('/')) => {
                    while !matches!(self.peek(), None | Some('\n')) {
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.pos();
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(self.err_at(start, "comment is not closed".into())),
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Items up to the end of the text (`open` is None) or up to the `}`
    /// closing the brace at `open`.
    fn body(&mut self, depth: usize, open: Option<Pos>) -> Result<Vec<Item>, String> {
        self.depth_check(depth)?;
        let mut items = Vec::new();
        loop {
            self.skip_trivia()?;
            match (self.peek(), open) {
                (None, None) => return Ok(items),
                (None, Some(at)) => {
                    return Err(self.err_at(at, "this { is never closed".into()));
                }
                (Some('}'), Some(_)) => {
                    self.bump();
                    return Ok(items);
                }
                (Some(','), _) => {
                    self.bump();
                }
                _ => {
                    let pos = self.pos();
                    let key = self.key("a rule or attribute name")?;
                    items.push(self.after_key(key, pos, depth)?);
                }
            }
        }
    }

    /// An identifier or a quoted string.
    fn key(&mut self, wanted: &str) -> Result<String, String> {
        match self.peek() {
            Some('"') => self.string(),
            Some(c) if ident_start(c) => {
                let start = self.at;
                while self.peek().is_some_and(ident_char) {
                    self.bump();
                }
                Ok(self.src[start..self.at].to_string())
            }
            Some(c) => {
                Err(self.err_at(self.pos(), format!("expected {wanted}, found {}", show(c))))
            }
            None => Err(self.err_at(
                self.pos(),
                format!("expected {wanted}, found the end of the rules"),
            )),
        }
    }

    /// What follows an item's key: `= value`, `: value`, `{ body }`, or a
    /// label (which nests the rest one level down).
    fn after_key(&mut self, key: String, pos: Pos, depth: usize) -> Result<Item, String> {
        self.depth_check(depth)?;
        self.skip_trivia()?;
        let value_pos = self.pos();
        let value = match self.peek() {
            Some('=') | Some(':') => {
                self.bump();
                self.skip_trivia()?;
                let at = self.pos();
                let value = self.value(depth)?;
                return Ok(Item {
                    key,
                    pos,
                    value,
                    value_pos: at,
                });
            }
            Some('{') => {
                self.bump();
                Value::Obj(self.body(depth + 1, Some(value_pos))?)
            }
            Some(c) if c == '"' || ident_start(c) => {
                let label = self.key("a label")?;
                Value::Obj(vec![self.after_key(label, value_pos, depth + 1)?])
            }
            Some(c) => {
                return Err(self.err_at(
                    value_pos,
                    format!("expected = or {{ after {key:?}, found {}", show(c)),
                ))
            }
            None => {
                return Err(self.err_at(
                    value_pos,
                    format!("expected = or {{ after {key:?}, found the end of the rules"),
                ))
            }
        };
        Ok(Item {
            key,
            pos,
            value,
            value_pos,
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        self.depth_check(depth)?;
        let pos = self.pos();
        match self.peek() {
            Some('"') => Ok(Value::Str(self.string()?)),
            Some('{') => {
                self.bump();
                Ok(Value::Obj(self.body(depth + 1, Some(pos))?))
            }
            Some('[') => {
                self.bump();
                self.list(depth + 1, pos)
            }
            Some('<') if self.peek2() == Some('<') => Err(self.err_at(
                pos,
                "heredoc strings are not supported in ACL rules; use a quoted string".into(),
            )),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'))
                {
                    self.bump();
                }
                Ok(Value::Other(format!(
                    "the number {}",
                    &self.src[start..self.at]
                )))
            }
            Some(c) if ident_start(c) => {
                let word = self.key("a value")?;
                Ok(Value::Other(match word.as_str() {
                    "true" | "false" => format!("the boolean {word}"),
                    "null" => "null".into(),
                    _ => format!("the bare word {word} (quote it: \"{word}\")"),
                }))
            }
            Some(c) => Err(self.err_at(pos, format!("expected a value, found {}", show(c)))),
            None => Err(self.err_at(pos, "expected a value, found the end of the rules".into())),
        }
    }

    fn list(&mut self, depth: usize, open: Pos) -> Result<Value, String> {
        self.depth_check(depth)?;
        let mut values = Vec::new();
        loop {
            self.skip_trivia()?;
            match self.peek() {
                Some(']') => {
                    self.bump();
                    return Ok(Value::List(values));
                }
                None => return Err(self.err_at(open, "this [ is never closed".into())),
                Some(_) => {
                    let at = self.pos();
                    values.push((at, self.value(depth)?));
                    self.skip_trivia()?;
                    match self.peek() {
                        Some(',') => {
                            self.bump();
                        }
                        Some(']') => {}
                        Some(c) => {
                            return Err(self.err_at(
                                self.pos(),
                                format!("expected , or ] in a list, found {}", show(c)),
                            ))
                        }
                        None => return Err(self.err_at(open, "this [ is never closed".into())),
                    }
                }
            }
        }
    }

    /// A quoted string, the opening quote next.
    fn string(&mut self) -> Result<String, String> {
        let start = self.pos();
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.err_at(start, "string is not closed".into())),
                Some('\n') => {
                    return Err(self.err_at(
                        start,
                        "string is not closed before the end of its line".into(),
                    ))
                }
                Some('"') => return Ok(out),
                Some('\\') => {
                    let at = self.pos();
                    let c = match self.bump() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('b') => '\u{8}',
                        Some('f') => '\u{c}',
                        Some(c @ ('"' | '\\' | '/')) => c,
                        Some('u') => self.unicode4(at)?,
                        Some('U') => {
                            let n = self.hex(8, at)?;
                            char::from_u32(n).ok_or_else(|| {
                                self.err_at(at, format!("\\U{n:08X} is not a character"))
                            })?
                        }
                        Some(c) => {
                            return Err(
                                self.err_at(at, format!("unknown escape \\{}", c.escape_default()))
                            )
                        }
                        None => return Err(self.err_at(start, "string is not closed".into())),
                    };
                    out.push(c);
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// The character of a `\uXXXX` escape, joining a UTF-16 surrogate pair
    /// (`\uD83D\uDE00`) as JSON writes characters beyond the BMP.
    fn unicode4(&mut self, at: Pos) -> Result<char, String> {
        let high = self.hex(4, at)?;
        if let Some(c) = char::from_u32(high) {
            return Ok(c);
        }
        if (0xD800..0xDC00).contains(&high)
            && self.peek() == Some('\\')
            && self.peek2() == Some('u')
        {
            self.bump();
            self.bump();
            let low = self.hex(4, at)?;
            if (0xDC00..0xE000).contains(&low) {
                let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                if let Some(c) = char::from_u32(c) {
                    return Ok(c);
                }
            }
        }
        Err(self.err_at(at, format!("\\u{high:04X} is half of a surrogate pair")))
    }

    fn hex(&mut self, digits: u32, at: Pos) -> Result<u32, String> {
        let mut n: u32 = 0;
        for _ in 0..digits {
            match self.peek().and_then(|c| c.to_digit(16)) {
                Some(d) => {
                    self.bump();
                    n = n.wrapping_mul(16).wrapping_add(d);
                }
                None => {
                    return Err(self.err_at(at, format!("escape needs {digits} hex digits")));
                }
            }
        }
        Ok(n)
    }
}
