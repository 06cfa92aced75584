//! `toYAML` as consul-template prints it: Go's `gopkg.in/yaml.v2`
//! (libyaml's emitter) in block style — its key order (numbers inside
//! keys compared by value), its choice of plain, single-quoted,
//! double-quoted or literal scalars, quoting of strings that would read
//! back as another type (YAML 1.1: `yes`, `on`, `1e3`, `0o17`, dates),
//! `%g` floats, and lines folded at spaces past column 80.

use super::encode::Node;

const WIDTH: usize = 80;

/// yaml.v2's `keyList.Less` for string keys.
fn key_less(a: &str, b: &str) -> bool {
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return bl;
        }
        let (mut an, mut bn): (i64, i64) = (0, 0);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an.wrapping_mul(10).wrapping_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn.wrapping_mul(10).wrapping_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

/// Go's `strconv.ParseInt(s, 0, 64)` / `ParseUint` succeeding (after
/// yaml.v2 dropped the underscores).
fn go_int(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = unsigned.to_ascii_lowercase();
    let (digits, radix) = if let Some(h) = lower.strip_prefix("0x") {
        (h, 16)
    } else if let Some(o) = lower.strip_prefix("0o") {
        (o, 8)
    } else if let Some(b) = lower.strip_prefix("0b") {
        (b, 2)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (&lower[1..], 8)
    } else {
        (lower.as_str(), 10)
    };
    !digits.is_empty()
        && digits.chars().all(|c| c.is_digit(radix))
        && (i64::from_str_radix(
            &format!("{}{digits}", if s.starts_with('-') { "-" } else { "" }),
            radix,
        )
        .is_ok()
            || (!s.starts_with('-') && u64::from_str_radix(digits, radix).is_ok()))
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn yaml_float(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mant_ok = match mant.split_once('.') {
        Some(("", f)) => !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()),
        Some((w, f)) => {
            !w.is_empty()
                && w.bytes().all(|b| b.is_ascii_digit())
                && f.bytes().all(|b| b.is_ascii_digit())
        }
        None => !mant.is_empty() && mant.bytes().all(|b| b.is_ascii_digit()),
    };
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    mant_ok && exp_ok
}

/// A date or date-time yaml.v2 reads as a timestamp (`2001-12-14`, ...).
fn timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if b.len() < 8 || !digits(0..4) || b[4] != b'-' {
        return false;
    }
    // YYYY-M[M]-D[D], then nothing or a T/t/space and a time.
    let mut i = 5;
    let month = (i..s.len()).take_while(|&j| b[j].is_ascii_digit()).count();
    if !(1..=2).contains(&month) {
        return false;
    }
    i += month;
    if b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    let day = (i..s.len()).take_while(|&j| b[j].is_ascii_digit()).count();
    if !(1..=2).contains(&day) {
        return false;
    }
    i += day;
    i == s.len() || (matches!(b[i], b'T' | b't' | b' ') && s[i + 1..].contains(':'))
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$` (YAML 1.1 base 60).
fn base60(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (main, _frac) = match s.split_once('.') {
        Some((m, f)) if f.bytes().all(|b| b.is_ascii_digit() || b == b'_') => (m, f),
        Some(_) => return false,
        None => (s, ""),
    };
    let mut parts = main.split(':');
    let first = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    first.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && first.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        && !rest.is_empty()
        && rest.iter().all(|p| {
            (1..=2).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || p.as_bytes()[0] <= b'5')
        })
}

/// Whether yaml.v2 would read `s`, unquoted, as something else than a string.
fn resolves_to_other(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "n", "N", "no",
        "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "", "~", "null", "Null",
        "NULL", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
        "-.Inf", "-.INF", "<<",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    match s.as_bytes().first() {
        Some(b'.') => s.parse::<f64>().is_ok() && !s[1..].contains(|c: char| c.is_alphabetic()),
        Some(b'0'..=b'9' | b'+' | b'-') => {
            let plain = s.replace('_', "");
            timestamp(s) || go_int(&plain) || yaml_float(&plain)
        }
        _ => false,
    }
}

/// libyaml's `is_printable` (by code point).
fn printable(c: char) -> bool {
    matches!(c as u32, 0x0A | 0x20..=0x7E | 0xA0..=0xD7FF | 0xE000..=0xFFFD) && c != '\u{FEFF}'
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// libyaml's scalar analysis and style selection for a string.
fn style_of(s: &str, simple_key: bool) -> Style {
    let requested = if s.contains('\n') {
        Style::Literal
    } else if !resolves_to_other(s) && !base60(s) {
        Style::Plain
    } else {
        Style::Double
    };
    if s.is_empty() {
        return if requested == Style::Plain {
            Style::Single
        } else {
            Style::Double
        };
    }
    let chars: Vec<char> = s.chars().collect();
    // Flow indicators matter only in flow style, which is never used here.
    let (mut block_ind, mut special, mut line_breaks) = (false, false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break, mut prev_space, mut prev_break) =
        (false, false, false, false);
    if s.starts_with("---") || s.starts_with("...") {
        block_ind = true;
    }
    let blankz = |i: usize| {
        chars
            .get(i)
            .is_none_or(|c| *c == ' ' || *c == '\t' || is_break(*c))
    };
    let mut preceded_ws = true;
    for (i, &c) in chars.iter().enumerate() {
        let followed_ws = blankz(i + 1);
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => {
                    block_ind = true;
                }
                '?' | ':' => {
                    block_ind |= followed_ws;
                }
                '-' if followed_ws => {
                    block_ind = true;
                }
                _ => {}
            }
        } else {
            match c {
                ':' => block_ind |= followed_ws,
                '#' if preceded_ws => block_ind = true,
                _ => {}
            }
        }
        special |= !printable(c);
        if is_break(c) {
            line_breaks = true;
        }
        let last = i + 1 == chars.len();
        if c == ' ' {
            leading_space |= i == 0;
            trailing_space |= last;
            break_space |= prev_break;
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            leading_break |= i == 0;
            trailing_break |= last;
            space_break |= prev_space;
            prev_break = true;
            prev_space = false;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_ws = c == ' ' || c == '\t' || is_break(c);
    }
    let mut plain_ok = true;
    let mut single_ok = true;
    let mut block_ok = true;
    if leading_space || leading_break || trailing_space || trailing_break {
        plain_ok = false;
    }
    if trailing_space {
        block_ok = false;
    }
    if break_space {
        plain_ok = false;
        single_ok = false;
    }
    if space_break || special {
        plain_ok = false;
        single_ok = false;
        block_ok = false;
    }
    if line_breaks || block_ind {
        plain_ok = false;
    }
    let mut style = requested;
    if style == Style::Plain && !plain_ok {
        style = Style::Single;
    }
    if style == Style::Single && !single_ok {
        style = Style::Double;
    }
    if style == Style::Literal && (!block_ok || simple_key) {
        style = Style::Double;
    }
    style
}

/// The output with libyaml's column and indentation bookkeeping.
struct Emitter {
    out: String,
    column: usize,
}

impl Emitter {
    fn put(&mut self, s: &str) {
        for c in s.chars() {
            if c == '\n' {
                self.column = 0;
            } else {
                self.column += 1;
            }
            self.out.push(c);
        }
    }

    fn newline_indent(&mut self, indent: usize) {
        self.put("\n");
        self.put(&" ".repeat(indent));
    }

    /// A string scalar; `indent` is where folded lines continue.
    fn string(&mut self, s: &str, indent: usize, simple_key: bool) {
        let chars: Vec<char> = s.chars().collect();
        let breaks_ok = !simple_key;
        match style_of(s, simple_key) {
            Style::Plain => {
                let mut spaces = false;
                for (i, &c) in chars.iter().enumerate() {
                    if c == ' ' {
                        if breaks_ok
                            && !spaces
                            && self.column > WIDTH
                            && chars.get(i + 1) != Some(&' ')
                        {
                            self.newline_indent(indent);
                        } else {
                            self.put(" ");
                        }
                        spaces = true;
                    } else {
                        self.put(&c.to_string());
                        spaces = false;
                    }
                }
            }
            Style::Single => {
                self.put("'");
                let mut spaces = false;
                for (i, &c) in chars.iter().enumerate() {
                    if c == ' ' {
                        if breaks_ok
                            && !spaces
                            && self.column > WIDTH
                            && i > 0
                            && i + 1 < chars.len()
                            && chars.get(i + 1) != Some(&' ')
                        {
                            self.newline_indent(indent);
                        } else {
                            self.put(" ");
                        }
                        spaces = true;
                    } else {
                        if c == '\'' {
                            self.put("'");
                        }
                        self.put(&c.to_string());
                        spaces = false;
                    }
                }
                self.put("'");
            }
            Style::Double => {
                self.put("\"");
                let mut spaces = false;
                for (i, &c) in chars.iter().enumerate() {
                    if !printable(c) || c == '"' || c == '\\' || is_break(c) {
                        let esc = match c {
                            '\0' => "\\0".to_string(),
                            '\u{7}' => "\\a".into(),
                            '\u{8}' => "\\b".into(),
                            '\t' => "\\t".into(),
                            '\n' => "\\n".into(),
                            '\u{b}' => "\\v".into(),
                            '\u{c}' => "\\f".into(),
                            '\r' => "\\r".into(),
                            '\u{1b}' => "\\e".into(),
                            '"' => "\\\"".into(),
                            '\\' => "\\\\".into(),
                            '\u{85}' => "\\N".into(),
                            '\u{a0}' => "\\_".into(),
                            '\u{2028}' => "\\L".into(),
                            '\u{2029}' => "\\P".into(),
                            c if (c as u32) <= 0xFF => format!("\\x{:02X}", c as u32),
                            c if (c as u32) <= 0xFFFF => format!("\\u{:04X}", c as u32),
                            c => format!("\\U{:08X}", c as u32),
                        };
                        self.put(&esc);
                        spaces = false;
                    } else if c == ' ' {
                        if breaks_ok
                            && !spaces
                            && self.column > WIDTH
                            && i > 0
                            && i + 1 < chars.len()
                        {
                            self.newline_indent(indent);
                            if chars.get(i + 1) == Some(&' ') {
                                self.put("\\");
                            }
                        } else {
                            self.put(" ");
                        }
                        spaces = true;
                    } else {
                        self.put(&c.to_string());
                        spaces = false;
                    }
                }
                self.put("\"");
            }
            Style::Literal => {
                self.put("|");
                if s.starts_with([' ', '\n']) {
                    self.put("2");
                }
                let trailing = s.len() - s.trim_end_matches('\n').len();
                match trailing {
                    0 => self.put("-"),
                    1 if s.len() > 1 => {}
                    _ => self.put("+"),
                }
                let mut at_line_start = true;
                self.put("\n");
                for c in s.chars() {
                    if c == '\n' {
                        self.put("\n");
                        at_line_start = true;
                    } else {
                        if at_line_start {
                            self.put(&" ".repeat(indent));
                            at_line_start = false;
                        }
                        self.put(&c.to_string());
                    }
                }
                if !s.ends_with('\n') {
                    self.put("\n");
                }
                return;
            }
        }
        self.put("\n");
    }

    /// A scalar or an empty collection, then a line end.
    fn scalar(&mut self, n: &Node, indent: usize) {
        match n {
            Node::Null => self.put("null\n"),
            Node::Bool(b) => self.put(if *b { "true\n" } else { "false\n" }),
            Node::Num(s) => self.put(&format!("{s}\n")),
            Node::Float(x) => self.put(&format!("{}\n", go_g(*x))),
            Node::Str(s) => self.string(s, indent, false),
            Node::List(_) => self.put("[]\n"),
            Node::Map(_) => self.put("{}\n"),
        }
    }

    fn value(&mut self, n: &Node, indent: usize) {
        match n {
            Node::Map(items) if !items.is_empty() => self.map(items, indent),
            Node::List(items) if !items.is_empty() => self.list(items, indent),
            other => self.scalar(other, indent + 2),
        }
    }

    fn map(&mut self, items: &[(String, Node)], indent: usize) {
        let mut sorted: Vec<&(String, Node)> = items.iter().collect();
        sorted.sort_by(|a, b| {
            if key_less(&a.0, &b.0) {
                std::cmp::Ordering::Less
            } else if key_less(&b.0, &a.0) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        for (i, (k, v)) in sorted.into_iter().enumerate() {
            // After "- " the first key stays on the dash's line.
            let _ = i;
            if self.column == 0 {
                self.put(&" ".repeat(indent));
            }
            self.key(k);
            match v {
                Node::Map(m) if !m.is_empty() => {
                    self.put("\n");
                    self.map(m, indent + 2);
                }
                Node::List(l) if !l.is_empty() => {
                    self.put("\n");
                    self.list(l, indent);
                }
                other => {
                    self.put(" ");
                    self.scalar(other, indent + 2);
                }
            }
        }
    }

    fn key(&mut self, k: &str) {
        // Keys are simple keys: no folding, no literal blocks.
        let mut tmp = Emitter {
            out: String::new(),
            column: self.column,
        };
        tmp.string(k, 0, true);
        let text = tmp.out.trim_end_matches('\n').to_string();
        self.put(&text);
        self.put(":");
    }

    fn list(&mut self, items: &[Node], indent: usize) {
        for item in items {
            if self.column == 0 {
                self.put(&" ".repeat(indent));
            }
            self.put("- ");
            match item {
                Node::Map(m) if !m.is_empty() => self.map(m, indent + 2),
                Node::List(l) if !l.is_empty() => self.list(l, indent + 2),
                other => self.scalar(other, indent + 2),
            }
        }
    }
}

/// Go's `strconv.FormatFloat(x, 'g', -1, 64)` with yaml.v2's names for
/// the infinities and NaN.
fn go_g(x: f64) -> String {
    if x.is_nan() {
        return ".nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let e = format!("{x:e}"); // shortest digits, e.g. "1.234567e6"
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        format!("{x}")
    }
}

/// yaml.v2's `Marshal` of `n`, trimmed as consul-template trims it.
pub fn to_yaml(n: &Node) -> String {
    let mut e = Emitter {
        out: String::new(),
        column: 0,
    };
    e.value(n, 0);
    e.out.trim().to_string()
}
