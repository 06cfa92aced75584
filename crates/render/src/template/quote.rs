//! Go's `strconv` quoting and unquoting (`Quote`, `QuoteToASCII`,
//! `QuoteRune`, `Unquote`, `UnquoteChar`) and `%#U`, as the lexer, parser,
//! error messages and `printf`'s `%q` need them.

/// Go's `strconv.IsPrint`, approximated from Unicode categories: letters,
/// marks, numbers, punctuation, symbols and U+0020 are printable; controls,
/// format characters, other spaces, private-use and unassigned code points
/// are not. Exact for Latin-1 (what templates nearly always contain).
pub(crate) fn is_print(c: char) -> bool {
    let r = c as u32;
    if r <= 0xFF {
        return (0x20..=0x7E).contains(&r) || ((0xA1..=0xFF).contains(&r) && r != 0xAD);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(r,
        0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xFFFE | 0xFFFF | 0xE000..=0xF8FF | 0xF0000.. | 0xD800..=0xDFFF | 0x0600..=0x0605
        | 0x061C | 0x06DD | 0x070F | 0x180E | 0x110BD | 0x1D173..=0x1D17A | 0xE0001..=0xE007F)
}

/// `%#U`-style: `U+0041 'A'` for a printable rune, `U+0000` otherwise.
pub(crate) fn go_unicode_sharp(c: char) -> String {
    if is_print(c) {
        format!("U+{:04X} '{}'", c as u32, c)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

fn push_escaped(out: &mut String, c: char, quote: char, ascii_only: bool) {
    if c == quote || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if ascii_only {
        if (c as u32) < 0x80 && is_print(c) {
            out.push(c);
            return;
        }
    } else if is_print(c) {
        out.push(c);
        return;
    }
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7F => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Go's `strconv.Quote`.
pub(crate) fn quote(s: &str) -> String {
    quote_with(s, '"', false)
}

/// Go's `strconv.QuoteToASCII`.
pub(crate) fn quote_ascii(s: &str) -> String {
    quote_with(s, '"', true)
}

fn quote_with(s: &str, q: char, ascii_only: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        push_escaped(&mut out, c, q, ascii_only);
    }
    out.push(q);
    out
}

/// Go's `strconv.QuoteRune` / `QuoteRuneToASCII`.
pub(crate) fn quote_rune(c: char, ascii_only: bool) -> String {
    let mut out = String::from("'");
    push_escaped(&mut out, c, '\'', ascii_only);
    out.push('\'');
    out
}

/// Go's `strconv.CanBackquote`.
pub(crate) fn can_backquote(s: &str) -> bool {
    s.chars()
        .all(|c| c != '`' && c != '\u{FEFF}' && (c == '\t' || !(c < ' ' || c == '\x7f')))
}

/// Go's `strconv.UnquoteChar`: the first (possibly escaped) character of
/// `s` and the rest; `None` is Go's `invalid syntax`. `byte_value` is set for
/// `\x`/octal escapes (raw bytes in Go strings).
fn unquote_char(s: &str, quote: char) -> Option<(u32, bool, &str)> {
    let mut chars = s.chars();
    let c = chars.next()?;
    if c == quote && (quote == '\'' || quote == '"') {
        return None;
    }
    if c != '\\' {
        return Some((c as u32, false, chars.as_str()));
    }
    let e = chars.next()?;
    let rest = chars.as_str();
    let simple = match e {
        'a' => Some(7),
        'b' => Some(8),
        'f' => Some(12),
        'n' => Some(10),
        'r' => Some(13),
        't' => Some(9),
        'v' => Some(11),
        '\\' => Some('\\' as u32),
        '\'' | '"' if e == quote => Some(e as u32),
        _ => None,
    };
    if let Some(v) = simple {
        return Some((v, false, rest));
    }
    let hex = |n: usize| -> Option<(u32, &str)> {
        let digits = rest.get(..n)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some((u32::from_str_radix(digits, 16).ok()?, &rest[n..]))
    };
    match e {
        'x' => hex(2).map(|(v, r)| (v, true, r)),
        'u' | 'U' => {
            let (v, r) = hex(if e == 'u' { 4 } else { 8 })?;
            char::from_u32(v)?;
            Some((v, false, r))
        }
        '0'..='7' => {
            let digits = s.get(1..4)?;
            if !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return None;
            }
            let v = u32::from_str_radix(digits, 8).ok()?;
            (v <= 255).then_some((v, true, &s[4..]))
        }
        _ => None,
    }
}

/// Go's `strconv.Unquote` for `"..."`, `` `...` `` and `'...'` literals.
/// Byte escapes that are not valid UTF-8 become U+FFFD (a Rust string is
/// UTF-8; Go would keep the raw bytes).
pub(crate) fn unquote(lit: &str) -> Option<String> {
    let q = lit.chars().next()?;
    if lit.len() < 2 || !lit.ends_with(q) {
        return None;
    }
    let body = &lit[1..lit.len() - 1];
    match q {
        '`' => (!body.contains('`')).then(|| body.replace('\r', "")),
        '"' | '\'' => {
            let mut bytes = Vec::with_capacity(body.len());
            let mut rest = body;
            let mut count = 0;
            while !rest.is_empty() {
                if rest.starts_with('\n') {
                    return None;
                }
                let (v, is_byte, r) = unquote_char(rest, q)?;
                if is_byte {
                    bytes.push(v as u8);
                } else {
                    let mut buf = [0; 4];
                    bytes.extend_from_slice(char::from_u32(v)?.encode_utf8(&mut buf).as_bytes());
                }
                rest = r;
                count += 1;
            }
            if q == '\'' && count != 1 {
                return None;
            }
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => None,
    }
}

/// The value of a character constant such as `'a'` or `'\n'` (the parser's
/// `malformed character constant` when more follows).
pub(crate) fn char_constant(lit: &str) -> Result<u32, String> {
    let (v, _, tail) = unquote_char(&lit[1..], '\'').ok_or_else(|| "invalid syntax".to_string())?;
    if tail != "'" {
        return Err(format!("malformed character constant: {lit}"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_and_unquote() {
        let cases = [
            ("a\"b", "\"a\\\"b\""),
            ("\n\t\x01", "\"\\n\\t\\x01\""),
            ("é", "\"é\""),
        ];
        for (raw, quoted) in cases {
            assert_eq!(quote(raw), quoted);
            assert_eq!(unquote(quoted).as_deref(), Some(raw));
        }
        assert_eq!(quote_ascii("é"), "\"\\u00e9\"");
        assert_eq!(unquote("`a\\n`").as_deref(), Some("a\\n"));
        assert_eq!(unquote("\"\\q\""), None);
        assert_eq!(char_constant("'\\n'"), Ok(10));
        assert!(char_constant("'ab'").unwrap_err().starts_with("malformed"));
    }
}
