//! Go's `strconv.FormatFloat` for the `e`, `E`, `f`, `g`, `G` formats,
//! shortest (`prec < 0`) or with a precision, built on Rust's exact
//! decimal conversion so rounding agrees with Go's.

/// Decimal digits of |v| (no leading or trailing zeros) and the position of
/// the decimal point: value = 0.DIGITS × 10^dp.
struct Digits {
    d: Vec<u8>,
    dp: i32,
}

/// From Rust's `{:e}` rendering (`1.2345e-7`, `0e0`).
fn digits_from_exp(s: &str) -> Digits {
    let (mant, exp) = s.split_once('e').unwrap_or((s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while d.last() == Some(&b'0') {
        d.pop();
    }
    if d.is_empty() {
        return Digits { d, dp: 0 };
    }
    Digits { d, dp: exp + 1 }
}

fn shortest(v: f64) -> Digits {
    digits_from_exp(&format!("{v:e}"))
}

/// |v| rounded to `n` significant digits (n >= 1).
fn significant(v: f64, n: usize) -> Digits {
    digits_from_exp(&format!("{:.*e}", n - 1, v))
}

fn fmt_e(out: &mut String, digs: &Digits, prec: i32, fmt: char) {
    out.push(if digs.d.is_empty() {
        '0'
    } else {
        digs.d[0] as char
    });
    if prec > 0 {
        out.push('.');
        let mut i = 1;
        let m = digs.d.len().min(prec as usize + 1);
        if i < m {
            out.extend(digs.d[i..m].iter().map(|&b| b as char));
            i = m;
        }
        while i <= prec as usize {
            out.push('0');
            i += 1;
        }
    }
    out.push(fmt);
    let mut exp = digs.dp - 1;
    if digs.d.is_empty() {
        exp = 0;
    }
    out.push(if exp < 0 { '-' } else { '+' });
    let exp = exp.unsigned_abs();
    if exp < 10 {
        out.push('0');
    }
    out.push_str(&exp.to_string());
}

fn fmt_f(out: &mut String, digs: &Digits, prec: i32) {
    if digs.dp > 0 {
        let m = (digs.dp as usize).min(digs.d.len());
        out.extend(digs.d[..m].iter().map(|&b| b as char));
        for _ in m..digs.dp as usize {
            out.push('0');
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            let j = digs.dp + i - 1;
            let c = if j >= 0 && (j as usize) < digs.d.len() {
                digs.d[j as usize] as char
            } else {
                '0'
            };
            out.push(c);
        }
    }
}

/// `strconv.FormatFloat(v, fmt, prec, 64)` for fmt in `eEfgG`.
pub(crate) fn format_float(v: f64, fmt: char, prec: i32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    let a = v.abs();
    match fmt {
        'f' if prec >= 0 => out.push_str(&format!("{:.*}", prec as usize, a)),
        'f' => {
            let digs = shortest(a);
            fmt_f(&mut out, &digs, (digs.d.len() as i32 - digs.dp).max(0));
        }
        'e' | 'E' => {
            let (digs, p) = if prec < 0 {
                let d = shortest(a);
                let p = d.d.len().max(1) as i32 - 1;
                (d, p)
            } else {
                (significant(a, prec as usize + 1), prec)
            };
            fmt_e(&mut out, &digs, p, fmt);
        }
        _ => {
            let is_shortest = prec < 0;
            let (digs, mut p) = if is_shortest {
                let d = shortest(a);
                let p = d.d.len() as i32;
                (d, p)
            } else {
                let p = prec.max(1);
                (significant(a, p as usize), p)
            };
            let mut eprec = p;
            let nd = digs.d.len() as i32;
            if eprec > nd && nd >= digs.dp {
                eprec = nd;
            }
            if is_shortest {
                eprec = 6;
            }
            let exp = digs.dp - 1;
            let e = if fmt == 'G' { 'E' } else { 'e' };
            if exp < -4 || exp >= eprec {
                if p > nd {
                    p = nd;
                }
                fmt_e(&mut out, &digs, p - 1, e);
            } else {
                if p > digs.dp {
                    p = nd;
                }
                fmt_f(&mut out, &digs, (p - digs.dp).max(0));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::format_float;

    #[test]
    fn like_strconv() {
        let cases = [
            (1.0, 'g', -1, "1"),
            (1e6, 'g', -1, "1e+06"),
            (123456.0, 'g', -1, "123456"),
            (123456789.0, 'g', -1, "1.23456789e+08"),
            (0.0001, 'g', -1, "0.0001"),
            (0.00001, 'g', -1, "1e-05"),
            (3.14259, 'f', 2, "3.14"),
            (2.5, 'e', 3, "2.500e+00"),
            (0.0, 'e', -1, "0e+00"),
            (100.0, 'g', 2, "1e+02"),
            (-0.5, 'g', -1, "-0.5"),
            (1.5, 'G', 10, "1.5"),
        ];
        for (v, f, p, want) in cases {
            assert_eq!(format_float(v, f, p), want, "{v} {f} {p}");
        }
    }
}
