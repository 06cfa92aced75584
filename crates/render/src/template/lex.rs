//! The lexer: splits template text into items exactly where Go's
//! `text/template/parse` lexer does (same trim-marker rules, same line
//! counting, same error words), so positions in errors and trimmed
//! whitespace agree byte for byte.

use super::quote::go_unicode_sharp;

/// What kind of item the lexer produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemType {
    Error,
    Bool,
    Char,
    CharConstant,
    Complex,
    Assign,
    Declare,
    Eof,
    Field,
    Identifier,
    LeftDelim,
    LeftParen,
    Number,
    Pipe,
    RawString,
    RightDelim,
    RightParen,
    Space,
    String,
    Text,
    Variable,
    // Keywords.
    Block,
    Break,
    Continue,
    Dot,
    Define,
    Else,
    End,
    If,
    Nil,
    Range,
    Template,
    With,
}

impl ItemType {
    fn is_keyword(self) -> bool {
        matches!(
            self,
            ItemType::Block
                | ItemType::Break
                | ItemType::Continue
                | ItemType::Dot
                | ItemType::Define
                | ItemType::Else
                | ItemType::End
                | ItemType::If
                | ItemType::Nil
                | ItemType::Range
                | ItemType::Template
                | ItemType::With
        )
    }
}

/// One lexed item: its type, byte offset, text and starting line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub typ: ItemType,
    pub pos: usize,
    pub val: String,
    pub line: usize,
}

impl Item {
    /// The item as Go's parser names it in "unexpected X in Y" messages.
    pub fn describe(&self) -> String {
        match self.typ {
            ItemType::Eof => "EOF".into(),
            ItemType::Error => self.val.clone(),
            t if t.is_keyword() => format!("<{}>", self.val),
            _ if self.val.chars().count() > 10 => {
                let head: String = self.val.chars().take(10).collect();
                format!("{}...", super::quote::quote(&head))
            }
            _ => super::quote::quote(&self.val),
        }
    }
}

/// Options that change what the lexer emits.
pub(crate) struct LexOptions<'a> {
    pub left: &'a str,
    pub right: &'a str,
    /// `break`/`continue` are keywords unless a function has that name.
    pub break_ok: bool,
    pub continue_ok: bool,
}

const SPACE_CHARS: &[char] = &[' ', '\t', '\r', '\n'];
const LEFT_COMMENT: &str = "/*";
const RIGHT_COMMENT: &str = "*/";
const TRIM_MARKER_LEN: usize = 2;

fn is_space(c: Option<char>) -> bool {
    matches!(c, Some(' ' | '\t' | '\r' | '\n'))
}

/// Go's `isAlphaNumeric`: `_`, a letter or a digit.
pub(crate) fn is_alnum(c: Option<char>) -> bool {
    matches!(c, Some(c) if c == '_' || c.is_alphabetic() || c.is_numeric())
}

fn has_left_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(Some(b[1] as char))
}

fn has_right_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(Some(b[0] as char)) && b[1] == b'-'
}

enum State {
    Text,
    LeftDelim,
    Comment,
    RightDelim,
    InsideAction,
    Space,
    Identifier,
    Field,
    Variable,
    Char,
    Number,
    Quote,
    RawQuote,
}

struct Lexer<'a> {
    input: &'a str,
    left: &'a str,
    right: &'a str,
    break_ok: bool,
    continue_ok: bool,
    pos: usize,
    start: usize,
    at_eof: bool,
    paren_depth: i64,
    line: usize,
    start_line: usize,
    items: Vec<Item>,
}

/// Lexes the whole input. The last item is `Eof` or `Error`.
pub(crate) fn lex(input: &str, opts: &LexOptions<'_>) -> Vec<Item> {
    let mut l = Lexer {
        input,
        left: if opts.left.is_empty() {
            "{{"
        } else {
            opts.left
        },
        right: if opts.right.is_empty() {
            "}}"
        } else {
            opts.right
        },
        break_ok: opts.break_ok,
        continue_ok: opts.continue_ok,
        pos: 0,
        start: 0,
        at_eof: false,
        paren_depth: 0,
        line: 1,
        start_line: 1,
        items: Vec::new(),
    };
    let mut state = Some(State::Text);
    while let Some(s) = state {
        state = l.step(s);
    }
    l.items
}

impl Lexer<'_> {
    fn next(&mut self) -> Option<char> {
        let Some(c) = self.input[self.pos..].chars().next() else {
            self.at_eof = true;
            return None;
        };
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn peek(&mut self) -> Option<char> {
        let c = self.next();
        self.backup();
        c
    }

    fn backup(&mut self) {
        if !self.at_eof && self.pos > 0 {
            let c = self.input[..self.pos].chars().next_back().unwrap_or('\0');
            self.pos -= c.len_utf8();
            if c == '\n' {
                self.line -= 1;
            }
        }
    }

    fn emit(&mut self, typ: ItemType) {
        self.items.push(Item {
            typ,
            pos: self.start,
            val: self.input[self.start..self.pos].to_string(),
            line: self.start_line,
        });
        self.start = self.pos;
        self.start_line = self.line;
    }

    fn ignore(&mut self) {
        self.line += self.input[self.start..self.pos].matches('\n').count();
        self.start = self.pos;
        self.start_line = self.line;
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.next() {
            Some(c) if valid.contains(c) => true,
            _ => {
                self.backup();
                false
            }
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while matches!(self.next(), Some(c) if valid.contains(c)) {}
        self.backup();
    }

    fn errorf(&mut self, msg: String) -> Option<State> {
        self.items.push(Item {
            typ: ItemType::Error,
            pos: self.start,
            val: msg,
            line: self.start_line,
        });
        None
    }

    fn rest(&self) -> &str {
        &self.input[self.pos..]
    }

    fn at_right_delim(&self) -> (bool, bool) {
        let rest = self.rest();
        if has_right_trim_marker(rest) && rest[TRIM_MARKER_LEN..].starts_with(self.right) {
            return (true, true);
        }
        (rest.starts_with(self.right), false)
    }

    fn at_terminator(&mut self) -> bool {
        let c = self.peek();
        if is_space(c) {
            return true;
        }
        match c {
            None | Some('.' | ',' | '|' | ':' | ')' | '(') => true,
            _ => self.rest().starts_with(self.right),
        }
    }

    fn step(&mut self, state: State) -> Option<State> {
        match state {
            State::Text => self.lex_text(),
            State::LeftDelim => self.lex_left_delim(),
            State::Comment => self.lex_comment(),
            State::RightDelim => self.lex_right_delim(),
            State::InsideAction => self.lex_inside_action(),
            State::Space => self.lex_space(),
            State::Identifier => self.lex_identifier(),
            State::Field => self.lex_field_or_variable(ItemType::Field),
            State::Variable => {
                if self.at_terminator() {
                    self.emit(ItemType::Variable);
                    return Some(State::InsideAction);
                }
                self.lex_field_or_variable(ItemType::Variable)
            }
            State::Char => self.lex_quoted(
                '\'',
                "unterminated character constant",
                ItemType::CharConstant,
            ),
            State::Quote => self.lex_quoted('"', "unterminated quoted string", ItemType::String),
            State::RawQuote => self.lex_raw_quote(),
            State::Number => self.lex_number(),
        }
    }

    fn lex_text(&mut self) -> Option<State> {
        if let Some(x) = self.rest().find(self.left) {
            self.pos += x;
            let mut trim = 0;
            if has_left_trim_marker(&self.input[self.pos + self.left.len()..]) {
                let text = &self.input[self.start..self.pos];
                trim = text.len() - text.trim_end_matches(SPACE_CHARS).len();
            }
            self.pos -= trim;
            if self.pos > self.start {
                self.line += self.input[self.start..self.pos].matches('\n').count();
                self.emit(ItemType::Text);
            }
            self.pos += trim;
            self.ignore();
            return Some(State::LeftDelim);
        }
        self.pos = self.input.len();
        if self.pos > self.start {
            self.line += self.input[self.start..self.pos].matches('\n').count();
            self.emit(ItemType::Text);
        }
        self.emit(ItemType::Eof);
        None
    }

    fn lex_left_delim(&mut self) -> Option<State> {
        self.pos += self.left.len();
        let trim = has_left_trim_marker(self.rest());
        let after = if trim { TRIM_MARKER_LEN } else { 0 };
        if self.rest()[after..].starts_with(LEFT_COMMENT) {
            self.pos += after;
            self.ignore();
            return Some(State::Comment);
        }
        self.emit(ItemType::LeftDelim);
        self.pos += after;
        self.ignore();
        self.paren_depth = 0;
        Some(State::InsideAction)
    }

    fn lex_comment(&mut self) -> Option<State> {
        self.pos += LEFT_COMMENT.len();
        let Some(i) = self.rest().find(RIGHT_COMMENT) else {
            return self.errorf("unclosed comment".into());
        };
        self.pos += i + RIGHT_COMMENT.len();
        let (delim, trim) = self.at_right_delim();
        if !delim {
            return self.errorf("comment ends before closing delimiter".into());
        }
        if trim {
            self.pos += TRIM_MARKER_LEN;
        }
        self.pos += self.right.len();
        if trim {
            self.pos += left_trim_len(self.rest());
        }
        self.ignore();
        Some(State::Text)
    }

    fn lex_right_delim(&mut self) -> Option<State> {
        let trim = has_right_trim_marker(self.rest());
        if trim {
            self.pos += TRIM_MARKER_LEN;
            self.ignore();
        }
        self.pos += self.right.len();
        self.emit(ItemType::RightDelim);
        if trim {
            self.pos += left_trim_len(self.rest());
            self.ignore();
        }
        Some(State::Text)
    }

    fn lex_inside_action(&mut self) -> Option<State> {
        let (delim, _) = self.at_right_delim();
        if delim {
            if self.paren_depth == 0 {
                return Some(State::RightDelim);
            }
            return self.errorf("unclosed left paren".into());
        }
        let Some(c) = self.next() else {
            return self.errorf("unclosed action".into());
        };
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                self.backup();
                return Some(State::Space);
            }
            '=' => self.emit(ItemType::Assign),
            ':' => {
                if self.next() != Some('=') {
                    return self.errorf("expected :=".into());
                }
                self.emit(ItemType::Declare);
            }
            '|' => self.emit(ItemType::Pipe),
            '"' => return Some(State::Quote),
            '`' => return Some(State::RawQuote),
            '$' => return Some(State::Variable),
            '\'' => return Some(State::Char),
            '.' if !matches!(
                self.input.as_bytes().get(self.pos),
                Some(b'0'..=b'9') | None
            ) =>
            {
                return Some(State::Field);
            }
            '.' | '+' | '-' | '0'..='9' => {
                self.backup();
                return Some(State::Number);
            }
            c if is_alnum(Some(c)) => {
                self.backup();
                return Some(State::Identifier);
            }
            '(' => {
                self.emit(ItemType::LeftParen);
                self.paren_depth += 1;
            }
            ')' => {
                self.emit(ItemType::RightParen);
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self.errorf(format!("unexpected right paren {}", go_unicode_sharp(c)));
                }
            }
            c if c.is_ascii() && !c.is_ascii_control() => self.emit(ItemType::Char),
            c => {
                return self.errorf(format!(
                    "unrecognized character in action: {}",
                    go_unicode_sharp(c)
                ))
            }
        }
        Some(State::InsideAction)
    }

    fn lex_space(&mut self) -> Option<State> {
        let mut n = 0;
        while is_space(self.peek()) {
            self.next();
            n += 1;
        }
        let before = &self.input[self.pos - 1..];
        if has_right_trim_marker(before) && before[TRIM_MARKER_LEN..].starts_with(self.right) {
            self.backup();
            if n == 1 {
                return Some(State::RightDelim);
            }
        }
        self.emit(ItemType::Space);
        Some(State::InsideAction)
    }

    fn lex_identifier(&mut self) -> Option<State> {
        loop {
            let c = self.next();
            if is_alnum(c) {
                continue;
            }
            self.backup();
            if !self.at_terminator() {
                return self.bad_character(c);
            }
            let word = &self.input[self.start..self.pos];
            let typ = match keyword(word) {
                Some(ItemType::Break) if !self.break_ok => ItemType::Identifier,
                Some(ItemType::Continue) if !self.continue_ok => ItemType::Identifier,
                Some(k) => k,
                None if word.starts_with('.') => ItemType::Field,
                None if word == "true" || word == "false" => ItemType::Bool,
                None => ItemType::Identifier,
            };
            self.emit(typ);
            return Some(State::InsideAction);
        }
    }

    fn bad_character(&mut self, c: Option<char>) -> Option<State> {
        let shown = match c {
            Some(c) => go_unicode_sharp(c),
            None => "U+FFFFFFFFFFFFFFFF".into(),
        };
        self.errorf(format!("bad character {shown}"))
    }

    fn lex_field_or_variable(&mut self, typ: ItemType) -> Option<State> {
        if self.at_terminator() {
            let t = if typ == ItemType::Variable {
                ItemType::Variable
            } else {
                ItemType::Dot
            };
            self.emit(t);
            return Some(State::InsideAction);
        }
        let mut c;
        loop {
            c = self.next();
            if !is_alnum(c) {
                self.backup();
                break;
            }
        }
        if !self.at_terminator() {
            return self.bad_character(c);
        }
        self.emit(typ);
        Some(State::InsideAction)
    }

    fn lex_quoted(&mut self, close: char, unterminated: &str, typ: ItemType) -> Option<State> {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    None | Some('\n') => return self.errorf(unterminated.into()),
                    Some(_) => {}
                },
                None | Some('\n') => return self.errorf(unterminated.into()),
                Some(c) if c == close => break,
                Some(_) => {}
            }
        }
        self.emit(typ);
        Some(State::InsideAction)
    }

    fn lex_raw_quote(&mut self) -> Option<State> {
        loop {
            match self.next() {
                None => return self.errorf("unterminated raw quoted string".into()),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(ItemType::RawString);
        Some(State::InsideAction)
    }

    fn lex_number(&mut self) -> Option<State> {
        if !self.scan_number() {
            return self.bad_number();
        }
        if matches!(self.peek(), Some('+' | '-')) {
            if !self.scan_number() || !self.input[..self.pos].ends_with('i') {
                return self.bad_number();
            }
            self.emit(ItemType::Complex);
            return Some(State::InsideAction);
        }
        self.emit(ItemType::Number);
        Some(State::InsideAction)
    }

    fn bad_number(&mut self) -> Option<State> {
        let text = super::quote::quote(&self.input[self.start..self.pos]);
        self.errorf(format!("bad number syntax: {text}"))
    }

    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if is_alnum(self.peek()) {
            self.next();
            return false;
        }
        true
    }
}

fn left_trim_len(s: &str) -> usize {
    s.len() - s.trim_start_matches(SPACE_CHARS).len()
}

fn keyword(word: &str) -> Option<ItemType> {
    Some(match word {
        "." => ItemType::Dot,
        "block" => ItemType::Block,
        "break" => ItemType::Break,
        "continue" => ItemType::Continue,
        "define" => ItemType::Define,
        "else" => ItemType::Else,
        "end" => ItemType::End,
        "if" => ItemType::If,
        "range" => ItemType::Range,
        "nil" => ItemType::Nil,
        "template" => ItemType::Template,
        "with" => ItemType::With,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(input: &str) -> Vec<(ItemType, String)> {
        let opts = LexOptions {
            left: "",
            right: "",
            break_ok: true,
            continue_ok: true,
        };
        lex(input, &opts)
            .into_iter()
            .map(|i| (i.typ, i.val))
            .collect()
    }

    #[test]
    fn items_and_trim_markers() {
        use ItemType::*;
        let cases: &[(&str, &[(ItemType, &str)])] = &[
            (
                "a {{- .X -}} b",
                &[
                    (Text, "a"),
                    (LeftDelim, "{{"),
                    (Field, ".X"),
                    (RightDelim, "}}"),
                    (Text, "b"),
                    (Eof, ""),
                ],
            ),
            (
                "{{$x := 1}}",
                &[
                    (LeftDelim, "{{"),
                    (Variable, "$x"),
                    (Space, " "),
                    (Declare, ":="),
                    (Space, " "),
                    (Number, "1"),
                    (RightDelim, "}}"),
                    (Eof, ""),
                ],
            ),
            ("{{/* c */}}x", &[(Text, "x"), (Eof, "")]),
            (
                "{{.a.b}}",
                &[
                    (LeftDelim, "{{"),
                    (Field, ".a"),
                    (Field, ".b"),
                    (RightDelim, "}}"),
                    (Eof, ""),
                ],
            ),
            (
                "{{3 -}}",
                &[
                    (LeftDelim, "{{"),
                    (Number, "3"),
                    (RightDelim, "}}"),
                    (Eof, ""),
                ],
            ),
            (
                "{{\"a",
                &[(LeftDelim, "{{"), (Error, "unterminated quoted string")],
            ),
        ];
        for (input, want) in cases {
            let want: Vec<_> = want.iter().map(|(t, v)| (*t, v.to_string())).collect();
            assert_eq!(types(input), want, "{input}");
        }
    }
}
