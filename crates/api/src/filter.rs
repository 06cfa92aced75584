//! `?filter=`: the common part of Consul's filter expression language,
//! evaluated against the JSON form of each result item.
//!
//! Supported: selectors (`ServiceTags`, `ServiceMeta.env`,
//! `ServiceMeta["env"]`, `Service.Tags`), `==`, `!=`, `contains`,
//! `not contains`, `in`, `not in`, `is empty`, `is not empty`, `and`, `or`,
//! `not` and parentheses, with `"double"` or `` `raw` `` string values,
//! numbers and booleans. `matches` is refused with a clear error.
//!
//! The filter comes from any client, so the parser bounds its recursion:
//! parentheses and `not` may nest [`MAX_NESTING`] deep, beyond which the
//! filter is refused (a 400) instead of overflowing the stack. Chains of
//! `and` / `or` are kept flat (one node with a list), so however long a
//! chain is, evaluating and dropping the tree never recurses deeper than
//! the nesting the parser allowed.

use serde_json::Value;

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Every operand holds (a chain `a and b and c`, kept flat).
    And(Vec<Expr>),
    /// Some operand holds (a chain `a or b or c`, kept flat).
    Or(Vec<Expr>),
    /// The inner expression does not hold.
    Not(Box<Expr>),
    /// One comparison.
    Match {
        /// Path into the item.
        selector: Vec<String>,
        /// Comparison.
        op: Op,
        /// Right-hand value (unused for emptiness tests).
        value: String,
    },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `contains` / `in` (reversed)
    Contains,
    /// `not contains` / `not in`
    NotContains,
    /// `is empty`
    IsEmpty,
    /// `is not empty`
    IsNotEmpty,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Sym(&'static str),
}

fn tokenize(input: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' | ')' | '.' | '[' | ']' => {
                out.push(Tok::Sym(match c {
                    '(' => "(",
                    ')' => ")",
                    '.' => ".",
                    '[' => "[",
                    _ => "]",
                }));
                i += 1;
            }
            '=' | '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Sym(if c == '=' { "==" } else { "!=" }));
                i += 2;
            }
            '"' | '`' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string".into()),
                        Some(&ch) if ch == quote => break,
                        Some('\\') if quote == '"' => {
                            let esc = chars.get(i + 1).ok_or("unterminated string")?;
                            s.push(match esc {
                                'n' => '\n',
                                't' => '\t',
                                other => *other,
                            });
                            i += 2;
                            continue;
                        }
                        Some(&ch) => s.push(ch),
                    }
                    i += 1;
                }
                out.push(Tok::Str(s));
                i += 1;
            }
            c if c.is_alphanumeric() || c == '_' || c == '-' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '-' | '/' | ':'))
                {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(out)
}

/// How deep parentheses and `not` may nest. Real filters nest a handful
/// of levels; each level costs the parser a few stack frames, and this
/// bound keeps the deepest parse far below a worker thread's stack.
pub const MAX_NESTING: usize = 64;

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    /// Open parentheses and `not`s around the current position.
    depth: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x == w)
    }
    fn peek_sym(&self, s: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Sym(x)) if *x == s)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn expect_word(&mut self, w: &str) -> Result<(), String> {
        if self.peek_word(w) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {w:?}"))
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut operands = vec![self.and()?];
        while self.peek_word("or") {
            self.pos += 1;
            operands.push(self.and()?);
        }
        Ok(flatten(operands, Expr::Or))
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut operands = vec![self.unary()?];
        while self.peek_word("and") {
            self.pos += 1;
            operands.push(self.unary()?);
        }
        Ok(flatten(operands, Expr::And))
    }

    /// One level deeper (a `(` or a `not`); refused past [`MAX_NESTING`].
    fn nest(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!(
                "expression nested more than {MAX_NESTING} levels deep (parentheses and \"not\")"
            ));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.peek_word("not") {
            self.pos += 1;
            self.nest()?;
            let e = Expr::Not(Box::new(self.unary()?));
            self.depth -= 1;
            return Ok(e);
        }
        if self.peek_sym("(") {
            self.pos += 1;
            self.nest()?;
            let e = self.or()?;
            if !self.peek_sym(")") {
                return Err("expected \")\"".into());
            }
            self.pos += 1;
            self.depth -= 1;
            return Ok(e);
        }
        self.matcher()
    }

    fn value(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Str(s)) | Some(Tok::Word(s)) => Ok(s),
            _ => Err("expected a value".into()),
        }
    }

    fn selector(&mut self) -> Result<Vec<String>, String> {
        let mut path = match self.next() {
            Some(Tok::Word(w)) => vec![w],
            _ => return Err("expected a selector".into()),
        };
        loop {
            if self.peek_sym(".") {
                self.pos += 1;
                match self.next() {
                    Some(Tok::Word(w)) => path.push(w),
                    _ => return Err("expected a field name after \".\"".into()),
                }
            } else if self.peek_sym("[") {
                self.pos += 1;
                match self.next() {
                    Some(Tok::Str(s)) => path.push(s),
                    _ => return Err("expected a quoted key inside [ ]".into()),
                }
                if !self.peek_sym("]") {
                    return Err("expected \"]\"".into());
                }
                self.pos += 1;
            } else {
                return Ok(path);
            }
        }
    }

    fn matcher(&mut self) -> Result<Expr, String> {
        // `"value" in Selector` / `"value" not in Selector`
        if let Some(Tok::Str(_)) = self.toks.get(self.pos) {
            let value = self.value()?;
            let negate = self.peek_word("not");
            if negate {
                self.pos += 1;
            }
            self.expect_word("in")?;
            let selector = self.selector()?;
            let op = if negate {
                Op::NotContains
            } else {
                Op::Contains
            };
            return Ok(Expr::Match {
                selector,
                op,
                value,
            });
        }
        let selector = self.selector()?;
        let op = match self.next() {
            Some(Tok::Sym("==")) => Op::Equal,
            Some(Tok::Sym("!=")) => Op::NotEqual,
            Some(Tok::Word(w)) if w == "contains" => Op::Contains,
            Some(Tok::Word(w)) if w == "matches" => {
                return Err("the matches operator is not supported".into())
            }
            Some(Tok::Word(w)) if w == "not" => match self.next() {
                Some(Tok::Word(w)) if w == "contains" => Op::NotContains,
                Some(Tok::Word(w)) if w == "matches" => {
                    return Err("the matches operator is not supported".into())
                }
                _ => return Err("expected \"contains\" after \"not\"".into()),
            },
            Some(Tok::Word(w)) if w == "is" => {
                let negate = self.peek_word("not");
                if negate {
                    self.pos += 1;
                }
                self.expect_word("empty")?;
                let op = if negate { Op::IsNotEmpty } else { Op::IsEmpty };
                return Ok(Expr::Match {
                    selector,
                    op,
                    value: String::new(),
                });
            }
            _ => return Err(format!("expected an operator after {}", selector.join("."))),
        };
        let value = self.value()?;
        Ok(Expr::Match {
            selector,
            op,
            value,
        })
    }
}

/// One operand as itself, several as one flat `And` / `Or`.
fn flatten(operands: Vec<Expr>, chain: fn(Vec<Expr>) -> Expr) -> Expr {
    match <[Expr; 1]>::try_from(operands) {
        Ok([one]) => one,
        Err(many) => chain(many),
    }
}

/// Parses a filter expression; the error says what is wrong.
pub fn parse(input: &str) -> Result<Expr, String> {
    let toks = tokenize(input)
        .map_err(|e| format!("Failed to create boolean expression evaluator: {e}"))?;
    if toks.is_empty() {
        return Err("Failed to create boolean expression evaluator: empty filter".into());
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let e = p
        .or()
        .map_err(|e| format!("Failed to create boolean expression evaluator: {e}"))?;
    if p.pos != p.toks.len() {
        return Err(
            "Failed to create boolean expression evaluator: unexpected input after the expression"
                .into(),
        );
    }
    Ok(e)
}

/// The canonical text of an expression: what [`parse`] reads back into
/// the same expression (chains in parentheses, values quoted, selector
/// parts that are not plain words in brackets).
impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chain = |f: &mut std::fmt::Formatter<'_>, all: &[Expr], op: &str| {
            f.write_str("(")?;
            for (i, e) in all.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                write!(f, "{e}")?;
            }
            f.write_str(")")
        };
        match self {
            Expr::And(all) => chain(f, all, "and"),
            Expr::Or(any) => chain(f, any, "or"),
            Expr::Not(e) => write!(f, "not {e}"),
            Expr::Match {
                selector,
                op,
                value,
            } => {
                for (i, part) in selector.iter().enumerate() {
                    match (i, is_word(part)) {
                        (0, _) => f.write_str(part)?,
                        (_, true) => write!(f, ".{part}")?,
                        (_, false) => write!(f, "[{}]", quote(part))?,
                    }
                }
                match op {
                    Op::Equal => write!(f, " == {}", quote(value)),
                    Op::NotEqual => write!(f, " != {}", quote(value)),
                    Op::Contains => write!(f, " contains {}", quote(value)),
                    Op::NotContains => write!(f, " not contains {}", quote(value)),
                    Op::IsEmpty => f.write_str(" is empty"),
                    Op::IsNotEmpty => f.write_str(" is not empty"),
                }
            }
        }
    }
}

/// Whether the tokenizer reads `s` as one word.
fn is_word(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '/' | ':'))
}

/// `s` as a double-quoted string the tokenizer reads back as `s`.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn resolve<'a>(item: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(item, |v, key| v.as_object()?.get(key))
}

fn scalar_eq(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Number(n) => n.to_string() == want,
        Value::Bool(b) => b.to_string() == want,
        _ => false,
    }
}

fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    }
}

fn contains(v: Option<&Value>, want: &str) -> bool {
    match v {
        Some(Value::Array(a)) => a.iter().any(|x| scalar_eq(x, want)),
        Some(Value::Object(o)) => o.contains_key(want),
        Some(Value::String(s)) => s.contains(want),
        _ => false,
    }
}

impl Expr {
    /// Whether `item` (the JSON form of one result) matches.
    pub fn matches(&self, item: &Value) -> bool {
        match self {
            Expr::And(all) => all.iter().all(|e| e.matches(item)),
            Expr::Or(any) => any.iter().any(|e| e.matches(item)),
            Expr::Not(e) => !e.matches(item),
            Expr::Match {
                selector,
                op,
                value,
            } => {
                let v = resolve(item, selector);
                match op {
                    Op::Equal => v.is_some_and(|v| scalar_eq(v, value)),
                    Op::NotEqual => !v.is_some_and(|v| scalar_eq(v, value)),
                    Op::Contains => contains(v, value),
                    Op::NotContains => !contains(v, value),
                    Op::IsEmpty => is_empty(v),
                    Op::IsNotEmpty => !is_empty(v),
                }
            }
        }
    }
}

/// Keeps the items of `list` that match `filter` (all when `None`).
pub fn apply<T: serde::Serialize>(filter: Option<&Expr>, list: Vec<T>) -> Vec<T> {
    let Some(expr) = filter else { return list };
    list.into_iter()
        .filter(|item| serde_json::to_value(item).is_ok_and(|v| expr.matches(&v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evaluates_the_common_forms() {
        let item = json!({
            "ServiceName": "web",
            "ServicePort": 8080,
            "ServiceTags": ["v1", "primary"],
            "ServiceMeta": {"env": "prod", "team-x": "a"},
            "Service": {"Tags": ["blue"]},
            "NodeMeta": {}
        });
        let cases = [
            (r#"ServiceTags contains "v1""#, true),
            (r#"ServiceTags contains "v2""#, false),
            (r#""primary" in ServiceTags"#, true),
            (r#""v2" not in ServiceTags"#, true),
            (r#"ServiceTags not contains "v1""#, false),
            (r#"ServiceMeta.env == "prod""#, true),
            (r#"ServiceMeta["team-x"] == "a""#, true),
            (r#"ServiceMeta.env != "prod""#, false),
            (r#"ServiceMeta.missing == "x""#, false),
            (r#"ServicePort == 8080"#, true),
            (r#"Service.Tags contains "blue""#, true),
            (r#"NodeMeta is empty"#, true),
            (r#"ServiceTags is not empty"#, true),
            (
                r#"ServiceName == "web" and ServiceMeta.env == "dev""#,
                false,
            ),
            (
                r#"ServiceName == "web" and (ServiceMeta.env == "dev" or ServiceTags contains "v1")"#,
                true,
            ),
            (r#"not ServiceName == "db""#, true),
            ("ServiceName == `web`", true),
        ];
        for (expr, want) in cases {
            let e = parse(expr).unwrap_or_else(|err| panic!("{expr}: {err}"));
            assert_eq!(e.matches(&item), want, "{expr}");
        }
    }

    #[test]
    fn bad_expressions_say_why() {
        for expr in [
            "",
            "ServiceName ==",
            "ServiceName = \"x\"",
            "(ServiceName == \"x\"",
            "ServiceName matches \"x\"",
            "\"x\" ServiceTags",
            "ServiceTags contains \"x",
        ] {
            let err = parse(expr).unwrap_err();
            assert!(
                err.starts_with("Failed to create boolean expression evaluator"),
                "{expr}: {err}"
            );
        }
    }

    #[test]
    fn nesting_is_bounded_and_chains_stay_flat() {
        let leaf = r#"ServiceName == "web""#;
        let parens = |n: usize| format!("{}{leaf}{}", "(".repeat(n), ")".repeat(n));
        let nots = |n: usize| format!("{}{leaf}", "not ".repeat(n));
        let chain = |n: usize, op: &str| vec![leaf; n].join(op);
        // (expression, parses)
        let cases = [
            (parens(MAX_NESTING), true),
            (parens(MAX_NESTING + 1), false),
            (parens(3_000), false),
            (parens(100_000), false),
            ("(".repeat(100_000), false),
            (nots(MAX_NESTING), true),
            (nots(100_000), false),
            (chain(100_000, " and "), true),
            (chain(100_000, " or "), true),
        ];
        let item = json!({"ServiceName": "web"});
        for (expr, parses) in cases {
            let head = &expr[..expr.len().min(40)];
            match parse(&expr) {
                Ok(e) => {
                    assert!(parses, "{head}... must be refused");
                    // Evaluating and dropping a long chain must not recurse.
                    let _ = e.matches(&item);
                }
                Err(err) => {
                    assert!(!parses, "{head}...: {err}");
                    assert!(
                        err.contains("nested more than 64 levels") || err.contains("expected"),
                        "{head}...: {err}"
                    );
                }
            }
        }
        let err = parse(&parens(3_000)).unwrap_err();
        assert!(err.contains("nested more than 64 levels"), "{err}");
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        /// Tokens filters are made of, so that random sequences reach deep
        /// into the parser instead of failing at the first character.
        fn token() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("(".to_string()),
                Just(")".to_string()),
                Just("not".to_string()),
                Just("and".to_string()),
                Just("or".to_string()),
                Just("==".to_string()),
                Just("!=".to_string()),
                Just("contains".to_string()),
                Just("in".to_string()),
                Just("is".to_string()),
                Just("empty".to_string()),
                Just("matches".to_string()),
                Just(".".to_string()),
                Just("[".to_string()),
                Just("]".to_string()),
                "[A-Za-z_][A-Za-z0-9_/:-]{0,8}",
                "\"[^\"]{0,6}\"",
                "`[^`]{0,6}`",
                any::<char>().prop_map(String::from),
            ]
        }

        fn word() -> impl Strategy<Value = String> {
            "[A-Z][A-Za-z0-9_]{0,6}".prop_filter("keyword", |w| {
                ![
                    "and", "or", "not", "in", "is", "contains", "empty", "matches",
                ]
                .contains(&w.as_str())
            })
        }

        /// Any expression at most a few levels deep.
        fn expr() -> impl Strategy<Value = Expr> {
            let op = prop_oneof![
                Just(Op::Equal),
                Just(Op::NotEqual),
                Just(Op::Contains),
                Just(Op::NotContains),
                Just(Op::IsEmpty),
                Just(Op::IsNotEmpty),
            ];
            let part = prop_oneof![word(), any::<String>()];
            let leaf = (
                word(),
                proptest::collection::vec(part, 0..3),
                op,
                any::<String>(),
            )
                .prop_map(|(first, rest, op, value)| {
                    let empty_test = matches!(op, Op::IsEmpty | Op::IsNotEmpty);
                    Expr::Match {
                        selector: std::iter::once(first).chain(rest).collect(),
                        op,
                        value: if empty_test { String::new() } else { value },
                    }
                });
            leaf.prop_recursive(6, 48, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                    proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
                    inner.prop_map(|e| Expr::Not(Box::new(e))),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever the input: an answer (never a panic), and a parsed
            /// filter evaluates without one.
            #[test]
            fn fuzz_filter_parse_never_panics(tokens in proptest::collection::vec(token(), 0..64), raw in any::<String>()) {
                let item = serde_json::json!({"ServiceName": "web", "ServiceTags": ["a"], "ServiceMeta": {"k": "v"}});
                for input in [tokens.join(" "), tokens.concat(), raw] {
                    if let Ok(e) = parse(&input) {
                        let _ = e.matches(&item);
                    }
                }
            }

            /// Printing an expression and parsing it gives it back.
            #[test]
            fn fuzz_filter_round_trip(e in expr()) {
                let text = e.to_string();
                let back = parse(&text).map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
                prop_assert_eq!(back, e, "{}", text);
            }
        }
    }
}
