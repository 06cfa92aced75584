//! Number constants as Go's template parser reads them: `strconv.ParseInt`
//! / `ParseUint` with base 0 (`0x`, `0o`, `0b`, leading-zero octal,
//! underscores between digits), `ParseFloat` (decimal and hex floats),
//! character constants, and the int/uint/float classification of
//! `parse.NumberNode`.

use super::quote::char_constant;

/// A number constant and which Go types it can be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Number {
    /// The literal as written (what errors and `String()` show).
    pub text: String,
    pub int: Option<i64>,
    pub uint: Option<u64>,
    pub float: Option<f64>,
    /// Imaginary and complex constants are recognised but not supported.
    pub complex: bool,
    /// A character constant like `'a'` (an int, never printed as a float).
    pub is_char: bool,
}

/// Go's `underscoreOK`: underscores only between digits or after a base
/// prefix.
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    if !b.is_empty() && (b[0] == b'-' || b[0] == b'+') {
        i = 1;
    }
    let mut hex = false;
    if b.len() - i >= 2 && b[i] == b'0' && matches!(b[i + 1] | 0x20, b'b' | b'o' | b'x') {
        hex = b[i + 1] | 0x20 == b'x';
        i += 2;
        saw = b'0';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// `strconv.ParseUint(s, 0, 64)`.
pub(crate) fn parse_uint(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (base, digits, prefixed) = match s.as_bytes() {
        [b'0', b'x' | b'X', ..] => (16, &s[2..], true),
        [b'0', b'o' | b'O', ..] => (8, &s[2..], true),
        [b'0', b'b' | b'B', ..] => (2, &s[2..], true),
        [b'0', _, ..] => (8, &s[1..], true),
        _ => (10, s, false),
    };
    if prefixed && !underscore_ok(s) {
        return None;
    }
    if s.contains('_') && !prefixed && !underscore_ok(s) {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if clean.is_empty() && base != 8 {
        return None;
    }
    if clean.is_empty() {
        return Some(0);
    }
    if !clean.chars().all(|c| c.is_digit(base)) {
        return None;
    }
    u64::from_str_radix(&clean, base).ok()
}

/// `strconv.ParseInt(s, 0, 64)`.
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let u = parse_uint(body)?;
    if neg {
        if u <= 1u64 << 63 {
            Some((u as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(u).ok()
    }
}

/// `strconv.ParseFloat(s, 64)` for the forms the lexer lets through.
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    if s.contains('_') && !underscore_ok(s) {
        return None;
    }
    let clean: String = s.chars().filter(|&c| c != '_').collect();
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, &clean[..]),
    };
    let v = if body.len() > 2 && (body.starts_with("0x") || body.starts_with("0X")) {
        parse_hex_float(&body[2..])?
    } else {
        if !body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// A hex float mantissa `h[.h]p[+-]d` (the exponent is mandatory in Go).
fn parse_hex_float(s: &str) -> Option<f64> {
    let p = s.find(['p', 'P'])?;
    let (mant, exp) = (&s[..p], &s[p + 1..]);
    let exp: i32 = exp.parse().ok()?;
    let (int_part, frac_part) = mant.split_once('.').unwrap_or((mant, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int_part.chars().chain(frac_part.chars()) {
        v = v * 16.0 + f64::from(c.to_digit(16)?);
    }
    let shift = exp - 4 * frac_part.len() as i32;
    Some(v * 2f64.powi(shift))
}

impl Number {
    /// Classifies a number literal as Go's `parse.newNumber` does; the
    /// error is Go's message.
    pub(crate) fn parse(text: &str, is_char: bool, is_complex: bool) -> Result<Number, String> {
        let mut n = Number {
            text: text.to_string(),
            int: None,
            uint: None,
            float: None,
            complex: false,
            is_char,
        };
        if is_char {
            let v = char_constant(text)?;
            n.int = Some(i64::from(v));
            n.uint = Some(u64::from(v));
            n.float = Some(f64::from(v));
            return Ok(n);
        }
        if is_complex || (text.ends_with('i') && parse_float(&text[..text.len() - 1]).is_some()) {
            n.complex = true;
            return Ok(n);
        }
        n.uint = parse_uint(text);
        n.int = parse_int(text);
        if n.int == Some(0) {
            n.uint = Some(0);
        }
        if let Some(i) = n.int {
            n.float = Some(i as f64);
        } else if let Some(u) = n.uint {
            n.float = Some(u as f64);
        } else if let Some(f) = parse_float(text) {
            if !text.contains(['.', 'e', 'E', 'p', 'P']) {
                return Err(format!("integer overflow: {}", super::quote::quote(text)));
            }
            n.float = Some(f);
            if f.fract() == 0.0 && (-9.223372036854776e18..9.223372036854776e18).contains(&f) {
                n.int = Some(f as i64);
            }
            if f.fract() == 0.0 && (0.0..1.8446744073709552e19).contains(&f) {
                n.uint = Some(f as u64);
            }
        }
        if n.int.is_none() && n.uint.is_none() && n.float.is_none() {
            return Err(format!(
                "illegal number syntax: {}",
                super::quote::quote(text)
            ));
        }
        Ok(n)
    }

    /// Whether the evaluator treats the constant as a `float64` (Go's
    /// `idealConstant`: a float that is written like one).
    pub(crate) fn is_float_constant(&self) -> bool {
        let t = &self.text;
        let hex_int =
            t.len() > 2 && (t.starts_with("0x") || t.starts_with("0X")) && !t.contains(['p', 'P']);
        self.float.is_some() && !hex_int && !self.is_char && t.contains(['.', 'e', 'E', 'p', 'P'])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_integer_and_float_forms() {
        let ints = [
            ("0x1F", 31),
            ("0o17", 15),
            ("017", 15),
            ("0b101", 5),
            ("1_000", 1000),
            ("-7", -7),
        ];
        for (text, want) in ints {
            assert_eq!(parse_int(text), Some(want), "{text}");
        }
        assert_eq!(parse_int("1__0"), None);
        assert_eq!(parse_int("08"), None);
        assert_eq!(parse_float("1.5e3"), Some(1500.0));
        assert_eq!(parse_float("0x1p-2"), Some(0.25));
        assert_eq!(parse_float("1_0.5"), Some(10.5));
        let n = Number::parse("1e3", false, false).unwrap();
        assert_eq!((n.int, n.is_float_constant()), (Some(1000), true));
        assert!(Number::parse("99999999999999999999", false, false)
            .unwrap_err()
            .contains("overflow"));
    }
}
