//! `fmt.Sprintf`'s format-string walk: flags, `[n]` argument indexes,
//! `*` widths and precisions, and the `%!(...)` error forms.

use super::{Flags, Printer};
use crate::template::value::Value;

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
                    _ => {
                        p.f.prec = None;
                        p.buf.push_str("%!(BADPREC)");
                    }
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
