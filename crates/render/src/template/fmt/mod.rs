//! Go's `fmt` for template values: `Sprint`, `Sprintln`, `Sprintf` and the
//! `%v` printing of actions, with Go's verbs, flags, width and precision
//! (`*` and `[n]` argument indexes included) and its error forms
//! (`%!d(string=x)`, `%!v(MISSING)`, `%!(EXTRA ...)`, `%!(NOVERB)`,
//! `%!(BADWIDTH)`, `%!(BADPREC)`, `%!v(BADINDEX)`).

mod float;

use super::quote::{can_backquote, quote, quote_ascii, quote_rune};
use super::value::Value;
use float::format_float;

/// `fmt.Sprint`: spaces between operands when neither side is a string.
pub fn sprint(args: &[Value]) -> String {
    let mut p = Printer::default();
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        let is_string = matches!(a, Value::String(_));
        if i > 0 && !is_string && !prev_string {
            p.buf.push(' ');
        }
        p.print_arg(a, 'v');
        prev_string = is_string;
    }
    p.buf
}

/// `fmt.Sprintln`: always spaces, and a final newline.
pub fn sprintln(args: &[Value]) -> String {
    let mut p = Printer::default();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            p.buf.push(' ');
        }
        p.print_arg(a, 'v');
    }
    p.buf.push('\n');
    p.buf
}

/// `fmt.Sprint` of one value (what `{{.}}` prints; a nil prints `<nil>`).
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        v => {
            let mut p = Printer::default();
            p.print_arg(v, 'v');
            p.buf
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Flags {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    plus_v: bool,
    sharp_v: bool,
    wid: Option<usize>,
    prec: Option<usize>,
}

#[derive(Default)]
struct Printer {
    buf: String,
    f: Flags,
    erroring: bool,
}

/// Widths and precisions beyond this are Go's "too large" (ignored).
const TOO_LARGE: usize = 1_000_000;

fn parse_num(s: &[u8], start: usize, end: usize) -> (Option<usize>, usize) {
    let mut i = start;
    let mut num: usize = 0;
    let mut any = false;
    while i < end && s[i].is_ascii_digit() {
        if num > TOO_LARGE {
            return (None, end);
        }
        num = num * 10 + usize::from(s[i] - b'0');
        any = true;
        i += 1;
    }
    (any.then_some(num), i)
}

/// The `*` operand: an int within Go's bounds.
fn int_from_arg(args: &[Value], n: usize) -> (Option<i64>, usize) {
    let Some(a) = args.get(n) else {
        return (None, n);
    };
    let v = match a {
        Value::Int(i) => Some(*i),
        Value::Uint(u) => i64::try_from(*u).ok(),
        _ => None,
    };
    (v.filter(|v| v.unsigned_abs() <= TOO_LARGE as u64), n + 1)
}

/// `fmt.Sprintf`.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut p = Printer::default();
    let s = format.as_bytes();
    let end = s.len();
    let mut arg_num = 0usize;
    let mut reordered = false;
    let mut i = 0;
    while i < end {
        let mut good_arg_num = true;
        let last = i;
        while i < end && s[i] != b'%' {
            i += 1;
        }
        if i > last {
            p.buf.push_str(&format[last..i]);
        }
        if i >= end {
            break;
        }
        i += 1;
        p.f = Flags::default();
        while i < end {
            match s[i] {
                b'#' => p.f.sharp = true,
                b'0' => p.f.zero = !p.f.minus,
                b'+' => p.f.plus = true,
                b'-' => {
                    p.f.minus = true;
                    p.f.zero = false;
                }
                b' ' => p.f.space = true,
                _ => break,
            }
            i += 1;
        }
        // Argument index, width, precision.
        let mut after_index;
        (arg_num, i, after_index) = arg_number(
            &mut reordered,
            &mut good_arg_num,
            arg_num,
            format,
            i,
            args.len(),
        );
        if i < end && s[i] == b'*' {
            i += 1;
            let (w, next) = int_from_arg(args, arg_num);
            arg_num = next;
            match w {
                Some(w) => {
                    if w < 0 {
                        p.f.minus = true;
                        p.f.zero = false;
                    }
                    p.f.wid = Some(w.unsigned_abs() as usize);
                }
                None => p.buf.push_str("%!(BADWIDTH)"),
            }
            after_index = false;
        } else {
            let (w, next) = parse_num(s, i, end);
            p.f.wid = w;
            i = next;
            if after_index && w.is_some() {
                good_arg_num = false;
            }
        }
        if i + 1 < end && s[i] == b'.' {
            i += 1;
            if after_index {
                good_arg_num = false;
            }
            (arg_num, i, after_index) = arg_number(
                &mut reordered,
                &mut good_arg_num,
                arg_num,
                format,
                i,
                args.len(),
            );
            if i < end && s[i] == b'*' {
                i += 1;
                let (pr, next) = int_from_arg(args, arg_num);
                arg_num = next;
                match pr {
                    Some(pr) if pr >= 0 => p.f.prec = Some(pr as usize),
                    Some(_) => p.f.prec = None,
                    None => p.buf.push_str("%!(BADPREC)"),
                }
                after_index = false;
            } else {
                let (pr, next) = parse_num(s, i, end);
                p.f.prec = Some(pr.unwrap_or(0));
                i = next;
            }
        }
        if !after_index {
            (arg_num, i, _) = arg_number(
                &mut reordered,
                &mut good_arg_num,
                arg_num,
                format,
                i,
                args.len(),
            );
        }
        if i >= end {
            p.buf.push_str("%!(NOVERB)");
            break;
        }
        let verb = format[i..].chars().next().unwrap_or('?');
        i += verb.len_utf8();
        if verb == '%' {
            p.buf.push('%');
        } else if !good_arg_num {
            p.buf.push_str(&format!("%!{verb}(BADINDEX)"));
        } else if arg_num >= args.len() {
            p.buf.push_str(&format!("%!{verb}(MISSING)"));
        } else {
            if verb == 'v' {
                p.f.sharp_v = p.f.sharp;
                p.f.sharp = false;
                p.f.plus_v = p.f.plus;
                p.f.plus = false;
            }
            p.print_arg(&args[arg_num], verb);
            arg_num += 1;
        }
    }
    if !reordered && arg_num < args.len() {
        p.f = Flags::default();
        p.buf.push_str("%!(EXTRA ");
        for (k, a) in args[arg_num..].iter().enumerate() {
            if k > 0 {
                p.buf.push_str(", ");
            }
            if let Value::Nil = a {
                p.buf.push_str("<nil>");
            } else {
                p.buf.push_str(&a.type_name());
                p.buf.push('=');
                p.print_arg(a, 'v');
            }
        }
        p.buf.push(')');
    }
    p.buf
}

/// Go's `argNumber`: an explicit `[n]` index at `i`.
fn arg_number(
    reordered: &mut bool,
    good: &mut bool,
    arg_num: usize,
    format: &str,
    i: usize,
    num_args: usize,
) -> (usize, usize, bool) {
    let s = format.as_bytes();
    if i >= s.len() || s[i] != b'[' {
        return (arg_num, i, false);
    }
    *reordered = true;
    let rest = &s[i..];
    let (index, wid, ok) = {
        let mut found = None;
        if rest.len() >= 3 {
            for j in 1..rest.len() {
                if rest[j] == b']' {
                    let (n, next) = parse_num(rest, 1, j);
                    found = Some(match n {
                        Some(n) if next == j => (n as i64 - 1, j + 1, true),
                        _ => (0, j + 1, false),
                    });
                    break;
                }
            }
        }
        found.unwrap_or((0, 1, false))
    };
    if ok && index >= 0 && (index as usize) < num_args {
        return (index as usize, i + wid, true);
    }
    *good = false;
    (arg_num, i + wid, ok)
}

impl Printer {
    fn write_padding(&mut self, n: usize) {
        let c = if self.f.zero { '0' } else { ' ' };
        self.buf.extend(std::iter::repeat_n(c, n));
    }

    fn pad(&mut self, s: &str) {
        let Some(w) = self.f.wid.filter(|&w| w > 0) else {
            self.buf.push_str(s);
            return;
        };
        let n = w.saturating_sub(s.chars().count());
        if self.f.minus {
            self.buf.push_str(s);
            self.write_padding(n);
        } else {
            self.write_padding(n);
            self.buf.push_str(s);
        }
    }

    fn pad_nozero(&mut self, s: &str) {
        let old = self.f.zero;
        self.f.zero = false;
        self.pad(s);
        self.f.zero = old;
    }

    fn truncate<'s>(&self, s: &'s str) -> &'s str {
        match self.f.prec {
            Some(p) => match s.char_indices().nth(p) {
                Some((i, _)) => &s[..i],
                None => s,
            },
            None => s,
        }
    }

    fn bad_verb(&mut self, v: &Value, verb: char) {
        self.erroring = true;
        self.buf.push_str("%!");
        self.buf.push(verb);
        self.buf.push('(');
        if let Value::Nil = v {
            self.buf.push_str("<nil>");
        } else {
            self.buf.push_str(&v.type_name());
            self.buf.push('=');
            self.print_arg(v, 'v');
        }
        self.buf.push(')');
        self.erroring = false;
    }

    fn print_arg(&mut self, v: &Value, verb: char) {
        if let Value::Nil = v {
            match verb {
                'T' | 'v' => self.pad("<nil>"),
                _ => self.bad_verb(v, verb),
            }
            return;
        }
        if verb == 'T' {
            let t = v.type_name();
            self.fmt_s(&t);
            return;
        }
        self.print_value(v, verb, 0);
    }

    fn print_value(&mut self, v: &Value, verb: char, depth: usize) {
        match v {
            Value::Nil if depth > 0 => {
                if self.f.sharp_v {
                    self.buf.push_str("interface {}(nil)");
                } else {
                    self.buf.push_str("<nil>");
                }
            }
            Value::Nil => self.print_arg(v, verb),
            Value::Bool(b) => match verb {
                't' | 'v' => self.pad(if *b { "true" } else { "false" }),
                _ => self.bad_verb(v, verb),
            },
            Value::Int(i) => self.fmt_integer(v, i.unsigned_abs(), *i < 0, true, verb),
            Value::Uint(u) => self.fmt_integer(v, *u, false, false, verb),
            Value::Float(x) => self.fmt_float_verb(v, *x, verb),
            Value::String(s) => self.fmt_string(v, s, verb),
            Value::List(items) => {
                if self.f.sharp_v {
                    self.buf.push_str("[]interface {}{");
                    for (i, e) in items.iter().enumerate() {
                        if i > 0 {
                            self.buf.push_str(", ");
                        }
                        self.print_value(e, verb, depth + 1);
                    }
                    self.buf.push('}');
                } else {
                    self.buf.push('[');
                    for (i, e) in items.iter().enumerate() {
                        if i > 0 {
                            self.buf.push(' ');
                        }
                        self.print_value(e, verb, depth + 1);
                    }
                    self.buf.push(']');
                }
            }
            Value::Map(m) => {
                self.buf.push_str(if self.f.sharp_v {
                    "map[string]interface {}{"
                } else {
                    "map["
                });
                for (i, (k, e)) in m.iter().enumerate() {
                    if i > 0 {
                        self.buf.push_str(if self.f.sharp_v { ", " } else { " " });
                    }
                    self.fmt_string(&Value::Nil, k, verb);
                    self.buf.push(':');
                    self.print_value(e, verb, depth + 1);
                }
                self.buf.push(if self.f.sharp_v { '}' } else { ']' });
            }
            Value::Object(o) => match verb {
                'v' | 's' | 'x' | 'X' | 'q' if !self.erroring || verb == 'v' => {
                    let s = o.display();
                    self.fmt_string(v, &s, verb);
                }
                _ => self.bad_verb(v, verb),
            },
            Value::Func(_) => match verb {
                'v' | 'p' => self.pad("0x0"),
                _ => self.bad_verb(v, verb),
            },
        }
    }

    fn fmt_s(&mut self, s: &str) {
        let s = self.truncate(s).to_string();
        self.pad(&s);
    }

    fn fmt_string(&mut self, v: &Value, s: &str, verb: char) {
        match verb {
            'v' if self.f.sharp_v => self.fmt_q(s),
            'v' | 's' => self.fmt_s(s),
            'x' => self.fmt_sx(s, false),
            'X' => self.fmt_sx(s, true),
            'q' => self.fmt_q(s),
            _ => {
                let owned;
                let v = if let Value::Nil = v {
                    owned = Value::str(s);
                    &owned
                } else {
                    v
                };
                self.bad_verb(v, verb)
            }
        }
    }

    fn fmt_q(&mut self, s: &str) {
        let s = self.truncate(s);
        if self.f.sharp && can_backquote(s) {
            let q = format!("`{s}`");
            self.pad(&q);
            return;
        }
        let q = if self.f.plus {
            quote_ascii(s)
        } else {
            quote(s)
        };
        self.pad(&q);
    }

    fn fmt_sx(&mut self, s: &str, upper: bool) {
        let digits: &[u8; 16] = if upper {
            b"0123456789ABCDEF"
        } else {
            b"0123456789abcdef"
        };
        let b = s.as_bytes();
        let length = self.f.prec.map_or(b.len(), |p| p.min(b.len()));
        let mut width = 2 * length;
        if width == 0 {
            if let Some(w) = self.f.wid {
                self.write_padding(w);
            }
            return;
        }
        if self.f.space {
            if self.f.sharp {
                width *= 2;
            }
            width += length - 1;
        } else if self.f.sharp {
            width += 2;
        }
        let wid = self.f.wid.unwrap_or(0);
        if wid > width && !self.f.minus {
            self.write_padding(wid - width);
        }
        let x = if upper { 'X' } else { 'x' };
        if self.f.sharp {
            self.buf.push('0');
            self.buf.push(x);
        }
        for (i, &c) in b[..length].iter().enumerate() {
            if self.f.space && i > 0 {
                self.buf.push(' ');
                if self.f.sharp {
                    self.buf.push('0');
                    self.buf.push(x);
                }
            }
            self.buf.push(digits[usize::from(c >> 4)] as char);
            self.buf.push(digits[usize::from(c & 15)] as char);
        }
        if wid > width && self.f.minus {
            self.write_padding(wid - width);
        }
    }

    fn fmt_integer(&mut self, v: &Value, u: u64, negative: bool, signed: bool, verb: char) {
        match verb {
            'v' if self.f.sharp_v && !signed => {
                let old = self.f.sharp;
                self.f.sharp = true;
                self.fmt_int_base(u, false, 16, verb, false);
                self.f.sharp = old;
            }
            'v' | 'd' => self.fmt_int_base(u, negative, 10, verb, false),
            'b' => self.fmt_int_base(u, negative, 2, verb, false),
            'o' | 'O' => self.fmt_int_base(u, negative, 8, verb, false),
            'x' => self.fmt_int_base(u, negative, 16, verb, false),
            'X' => self.fmt_int_base(u, negative, 16, verb, true),
            'c' | 'q' | 'U' => {
                let code = if negative { u64::MAX - u + 1 } else { u };
                let r = u32::try_from(code)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                match verb {
                    'c' => self.pad(&r.to_string()),
                    'q' => {
                        let q = quote_rune(r, self.f.plus);
                        self.pad(&q);
                    }
                    _ => self.fmt_unicode(code),
                }
            }
            _ => self.bad_verb(v, verb),
        }
    }

    fn fmt_unicode(&mut self, u: u64) {
        let mut s = format!("U+{u:04X}");
        if let Some(p) = self.f.prec.filter(|&p| p > 4) {
            s = format!("U+{u:0p$X}");
        }
        if self.f.sharp {
            if let Some(c) = u32::try_from(u).ok().and_then(char::from_u32) {
                if super::quote::is_print(c) {
                    s.push_str(&format!(" '{c}'"));
                }
            }
        }
        self.pad_nozero(&s);
    }

    fn fmt_int_base(&mut self, u: u64, negative: bool, base: u32, verb: char, upper: bool) {
        let mut prec = 0usize;
        if let Some(p) = self.f.prec {
            prec = p;
            if p == 0 && u == 0 {
                let old = self.f.zero;
                self.f.zero = false;
                let w = self.f.wid.unwrap_or(0);
                self.write_padding(w);
                self.f.zero = old;
                return;
            }
        } else if self.f.zero && self.f.wid.is_some() {
            prec = self.f.wid.unwrap_or(0);
            if negative || self.f.plus || self.f.space {
                prec = prec.saturating_sub(1);
            }
        }
        let mut digits = match base {
            2 => format!("{u:b}"),
            8 => format!("{u:o}"),
            16 if upper => format!("{u:X}"),
            16 => format!("{u:x}"),
            _ => u.to_string(),
        };
        if digits.len() < prec {
            digits = "0".repeat(prec - digits.len()) + &digits;
        }
        let mut prefix = String::new();
        if self.f.sharp {
            match base {
                2 => prefix.push_str("0b"),
                8 if !digits.starts_with('0') => prefix.push('0'),
                16 => prefix.push_str(if upper { "0X" } else { "0x" }),
                _ => {}
            }
        }
        if verb == 'O' {
            prefix = format!("0o{prefix}");
        }
        let sign = if negative {
            "-"
        } else if self.f.plus {
            "+"
        } else if self.f.space {
            " "
        } else {
            ""
        };
        let s = format!("{sign}{prefix}{digits}");
        self.pad_nozero(&s);
    }

    fn fmt_float_verb(&mut self, v: &Value, x: f64, verb: char) {
        match verb {
            'v' => self.fmt_float(x, 'g', -1),
            'g' | 'G' => self.fmt_float(x, verb, -1),
            'f' | 'e' | 'E' => self.fmt_float(x, verb, 6),
            'F' => self.fmt_float(x, 'f', 6),
            _ => self.bad_verb(v, verb),
        }
    }

    /// Go's `fmt.fmtFloat`: sign handling, `#` (keep the point and zeros),
    /// zero padding after the sign, no zero padding of Inf/NaN.
    fn fmt_float(&mut self, x: f64, verb: char, prec: i32) {
        let prec = self.f.prec.map_or(prec, |p| p as i32);
        let mut num = format_float(x, verb, prec);
        if !num.starts_with(['-', '+']) {
            num.insert(0, '+');
        }
        if self.f.space && num.starts_with('+') && !self.f.plus {
            num.replace_range(0..1, " ");
        }
        let second = num.as_bytes().get(1).copied();
        if second == Some(b'I') || second == Some(b'N') {
            if second == Some(b'N') && !self.f.space && !self.f.plus {
                num.remove(0);
            }
            self.pad_nozero(&num);
            return;
        }
        if self.f.sharp {
            num = sharp_float(&num, verb, prec);
        }
        if self.f.plus || !num.starts_with('+') {
            let wid = self.f.wid.unwrap_or(0);
            if self.f.zero && wid > num.len() {
                self.buf.push_str(&num[..1]);
                self.write_padding(wid - num.len());
                self.buf.push_str(&num[1..]);
                return;
            }
            self.pad(&num);
            return;
        }
        let rest = num[1..].to_string();
        self.pad(&rest);
    }
}

/// `%#g` and friends: keep the decimal point and the trailing zeros.
fn sharp_float(num: &str, verb: char, prec: i32) -> String {
    let mut digits = match verb {
        'v' | 'g' | 'G' => {
            if prec == -1 {
                6
            } else {
                prec
            }
        }
        _ => 0,
    };
    let (mut body, tail) = match num[1..].find(['e', 'E']) {
        Some(i) => (num[..i + 1].to_string(), num[i + 1..].to_string()),
        None => (num.to_string(), String::new()),
    };
    let mut has_point = false;
    let mut saw_nonzero = false;
    for c in body[1..].chars() {
        match c {
            '.' => has_point = true,
            c => {
                if c != '0' {
                    saw_nonzero = true;
                }
                if saw_nonzero {
                    digits -= 1;
                }
            }
        }
    }
    if !has_point {
        if body.len() == 2 && body.ends_with('0') {
            digits -= 1;
        }
        body.push('.');
    }
    while digits > 0 {
        body.push('0');
        digits -= 1;
    }
    body + &tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_like_go() {
        let s = Value::str;
        let cases: Vec<(&str, Vec<Value>, &str)> = vec![
            (
                "%d|%5d|%-5d|%05d",
                vec![
                    Value::Int(42),
                    Value::Int(42),
                    Value::Int(42),
                    Value::Int(-42),
                ],
                "42|   42|42   |-0042",
            ),
            (
                "%x %X %o %b %#x",
                vec![
                    Value::Int(255),
                    Value::Int(255),
                    Value::Int(8),
                    Value::Int(5),
                    Value::Int(255),
                ],
                "ff FF 10 101 0xff",
            ),
            ("%s %q %v", vec![s("a"), s("b\n"), s("c")], "a \"b\\n\" c"),
            ("%d", vec![s("x")], "%!d(string=x)"),
            ("%d %d", vec![Value::Int(1)], "1 %!d(MISSING)"),
            ("%d", vec![Value::Int(1), s("x")], "1%!(EXTRA string=x)"),
            (
                "%.2f %e %g",
                vec![
                    Value::Float(3.14259),
                    Value::Float(1234.5),
                    Value::Float(1e21),
                ],
                "3.14 1.234500e+03 1e+21",
            ),
            (
                "%6.2f|%-8.3s|",
                vec![Value::Float(2.5), s("abcdef")],
                "  2.50|abc     |",
            ),
            (
                "%v %v",
                vec![
                    Value::list(vec![s("a"), Value::Float(1.0)]),
                    Value::map([("k", Value::Nil)]),
                ],
                "[a 1] map[k:<nil>]",
            ),
            ("%[2]d %[1]d", vec![Value::Int(1), Value::Int(2)], "2 1"),
            ("%*d", vec![Value::Int(4), Value::Int(7)], "   7"),
            ("%", vec![], "%!(NOVERB)"),
            (
                "%T %T",
                vec![Value::Float(1.0), Value::Nil],
                "float64 <nil>",
            ),
            (
                "%c %U %#U",
                vec![Value::Int(65), Value::Int(65), Value::Int(65)],
                "A U+0041 U+0041 'A'",
            ),
            ("%t %v", vec![Value::Bool(true), Value::Nil], "true <nil>"),
        ];
        for (f, args, want) in cases {
            assert_eq!(sprintf(f, &args), want, "{f}");
        }
        assert_eq!(
            sprint(&[Value::Int(1), Value::Int(2), s("a"), Value::Int(3)]),
            "1 2a3"
        );
        assert_eq!(sprintln(&[s("a"), s("b")]), "a b\n");
    }
}
