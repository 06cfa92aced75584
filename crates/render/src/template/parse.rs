//! The parser: Go's `text/template/parse` recursive descent, with the same
//! token look-ahead (so errors name the same token and line), variable
//! scoping checked at parse time, function names checked at parse time,
//! and `define`/`block` producing associated trees. Nesting is bounded.

use std::collections::BTreeMap;

use super::error::{Error, Result};
use super::lex::{lex, Item, ItemType, LexOptions};
use super::node::{is_empty_tree, Arg, Branch, Command, List, Node, Pipe};
use super::number::Number;
use super::quote::unquote;

/// What one parse produced: the trees by template name.
pub(crate) type TreeSet = BTreeMap<String, List>;

/// Parses `text` for template `name`; `has_func` says whether a function
/// name is defined (built-ins included).
pub(crate) fn parse(
    name: &str,
    text: &str,
    left: &str,
    right: &str,
    has_func: &dyn Fn(&str) -> bool,
    max_depth: usize,
) -> Result<TreeSet> {
    let opts = LexOptions {
        left,
        right,
        break_ok: !has_func("break"),
        continue_ok: !has_func("continue"),
    };
    let items = lex(text, &opts);
    let mut p = Parser {
        items,
        next_item: 0,
        token: [EMPTY, EMPTY, EMPTY],
        peek_count: 0,
        vars: vec!["$".into()],
        range_depth: 0,
        action_line: 0,
        parse_name: name,
        has_func,
        trees: TreeSet::new(),
        depth: 0,
        max_depth,
    };
    let root = p
        .parse_top()
        .map_err(|m| Error::parse(name, p.token[0].line, m))?;
    p.add(name, root)
        .map_err(|m| Error::parse(name, p.token[0].line, m))?;
    Ok(p.trees)
}

const EMPTY: Item = Item {
    typ: ItemType::Error,
    pos: 0,
    val: String::new(),
    line: 0,
};

/// A parse failure's message; the caller adds `template: NAME:LINE: `.
type Fail<T> = std::result::Result<T, String>;

/// What `textOrAction` returns: a node, or the `{{end}}`/`{{else}}` that
/// closes the enclosing list.
enum Parsed {
    Node(Node),
    End,
    Else,
}

impl Parsed {
    fn describe(&self) -> &'static str {
        match self {
            Parsed::End => "{{end}}",
            Parsed::Else => "{{else}}",
            Parsed::Node(_) => "node",
        }
    }
}

struct Parser<'a> {
    items: Vec<Item>,
    next_item: usize,
    token: [Item; 3],
    peek_count: usize,
    vars: Vec<String>,
    range_depth: usize,
    action_line: usize,
    parse_name: &'a str,
    has_func: &'a dyn Fn(&str) -> bool,
    trees: TreeSet,
    depth: usize,
    max_depth: usize,
}

/// Per-tree parser state, saved while a `define` or `block` body is parsed
/// (Go parses those with a fresh `Tree` sharing the lexer).
struct Saved {
    vars: Vec<String>,
    range_depth: usize,
    action_line: usize,
    token: [Item; 3],
    peek_count: usize,
}

impl Parser<'_> {
    fn lex_next(&mut self) -> Item {
        let item = self.items.get(self.next_item).cloned().unwrap_or(EMPTY);
        self.next_item += 1;
        item
    }

    fn next(&mut self) -> Item {
        if self.peek_count > 0 {
            self.peek_count -= 1;
        } else {
            self.token[0] = self.lex_next();
        }
        self.token[self.peek_count].clone()
    }

    fn backup(&mut self) {
        self.peek_count += 1;
    }

    fn backup2(&mut self, t1: Item) {
        self.token[1] = t1;
        self.peek_count = 2;
    }

    fn backup3(&mut self, t2: Item, t1: Item) {
        self.token[1] = t1;
        self.token[2] = t2;
        self.peek_count = 3;
    }

    fn peek(&mut self) -> Item {
        if self.peek_count > 0 {
            return self.token[self.peek_count - 1].clone();
        }
        self.peek_count = 1;
        self.token[0] = self.lex_next();
        self.token[0].clone()
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let t = self.next();
            if t.typ != ItemType::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Item {
        let t = self.next_non_space();
        self.backup();
        t
    }

    fn expect(&mut self, typ: ItemType, context: &str) -> Fail<Item> {
        let t = self.next_non_space();
        if t.typ != typ {
            return Err(self.unexpected(&t, context));
        }
        Ok(t)
    }

    fn unexpected(&self, token: &Item, context: &str) -> String {
        if token.typ == ItemType::Error {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != token.line {
                extra = format!(
                    " in action started at {}:{}",
                    self.parse_name, self.action_line
                );
                if token.val.ends_with(" action") {
                    extra = extra[" in action".len()..].to_string();
                }
            }
            return format!("{}{extra}", token.describe());
        }
        format!("unexpected {} in {context}", token.describe())
    }

    fn enter(&mut self) -> Fail<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(format!(
                "exceeded maximum nesting depth ({})",
                self.max_depth
            ));
        }
        Ok(())
    }

    fn save(&mut self) -> Saved {
        Saved {
            vars: std::mem::replace(&mut self.vars, vec!["$".into()]),
            range_depth: std::mem::take(&mut self.range_depth),
            action_line: std::mem::take(&mut self.action_line),
            token: std::mem::replace(&mut self.token, [EMPTY, EMPTY, EMPTY]),
            peek_count: std::mem::take(&mut self.peek_count),
        }
    }

    fn restore(&mut self, s: Saved) {
        self.vars = s.vars;
        self.range_depth = s.range_depth;
        self.action_line = s.action_line;
        self.token = s.token;
        self.peek_count = s.peek_count;
    }

    /// Go's `Tree.add`: a second non-empty definition in one parse fails.
    fn add(&mut self, name: &str, root: List) -> Fail<()> {
        match self.trees.get(name) {
            Some(old) if !is_empty_tree(old) => {
                if !is_empty_tree(&root) {
                    return Err(format!(
                        "template: multiple definition of template {}",
                        super::quote::quote(name)
                    ));
                }
            }
            _ => {
                self.trees.insert(name.to_string(), root);
            }
        }
        Ok(())
    }

    fn parse_top(&mut self) -> Fail<List> {
        let mut root = List::default();
        while self.peek().typ != ItemType::Eof {
            if self.peek().typ == ItemType::LeftDelim {
                let delim = self.next();
                if self.next_non_space().typ == ItemType::Define {
                    let saved = self.save();
                    let r = self.parse_definition();
                    self.restore(saved);
                    r?;
                    continue;
                }
                self.backup2(delim);
            }
            match self.text_or_action()? {
                Parsed::Node(n) => root.nodes.push(n),
                other => return Err(format!("unexpected {}", other.describe())),
            }
        }
        Ok(root)
    }

    fn parse_definition(&mut self) -> Fail<()> {
        let context = "define clause";
        let name = self.next_non_space();
        if name.typ != ItemType::String && name.typ != ItemType::RawString {
            return Err(self.unexpected(&name, context));
        }
        let name = unquote(&name.val).ok_or("invalid syntax")?;
        self.expect(ItemType::RightDelim, context)?;
        let (root, end) = self.item_list()?;
        if !matches!(end, Parsed::End) {
            return Err(format!("unexpected {} in {context}", end.describe()));
        }
        self.add(&name, root)
    }

    fn item_list(&mut self) -> Fail<(List, Parsed)> {
        let mut list = List::default();
        while self.peek_non_space().typ != ItemType::Eof {
            match self.text_or_action()? {
                Parsed::Node(n) => list.nodes.push(n),
                end => return Ok((list, end)),
            }
        }
        Err("unexpected EOF".into())
    }

    fn text_or_action(&mut self) -> Fail<Parsed> {
        let token = self.next_non_space();
        match token.typ {
            ItemType::Text => Ok(Parsed::Node(Node::Text(token.val))),
            ItemType::LeftDelim => {
                self.action_line = token.line;
                let r = self.action();
                self.action_line = 0;
                r
            }
            _ => Err(self.unexpected(&token, "input")),
        }
    }

    fn action(&mut self) -> Fail<Parsed> {
        let token = self.next_non_space();
        match token.typ {
            ItemType::Block => return self.block_control().map(Parsed::Node),
            ItemType::Break | ItemType::Continue => {
                let is_break = token.typ == ItemType::Break;
                let what = if is_break {
                    "{{break}}"
                } else {
                    "{{continue}}"
                };
                let t = self.next_non_space();
                if t.typ != ItemType::RightDelim {
                    return Err(self.unexpected(&t, what));
                }
                if self.range_depth == 0 {
                    return Err(format!("{what} outside {{{{range}}}}"));
                }
                let pos = token.pos;
                return Ok(Parsed::Node(if is_break {
                    Node::Break { pos }
                } else {
                    Node::Continue { pos }
                }));
            }
            ItemType::Else => return self.else_control(),
            ItemType::End => {
                self.expect(ItemType::RightDelim, "end")?;
                return Ok(Parsed::End);
            }
            ItemType::If => return self.control("if").map(|b| Parsed::Node(Node::If(b))),
            ItemType::Range => return self.control("range").map(|b| Parsed::Node(Node::Range(b))),
            ItemType::Template => return self.template_control().map(Parsed::Node),
            ItemType::With => return self.control("with").map(|b| Parsed::Node(Node::With(b))),
            _ => {}
        }
        self.backup();
        let token = self.peek();
        let pipe = self.pipeline("command", ItemType::RightDelim)?;
        Ok(Parsed::Node(Node::Action {
            pos: token.pos,
            pipe,
        }))
    }

    fn else_control(&mut self) -> Fail<Parsed> {
        let peek = self.peek_non_space();
        if peek.typ == ItemType::If {
            return Ok(Parsed::Else);
        }
        self.expect(ItemType::RightDelim, "else")?;
        Ok(Parsed::Else)
    }

    fn control(&mut self, context: &str) -> Fail<Branch> {
        self.enter()?;
        let vars = self.vars.len();
        let r = self.control_body(context);
        self.vars.truncate(vars);
        self.depth -= 1;
        r
    }

    fn control_body(&mut self, context: &str) -> Fail<Branch> {
        let pipe = self.pipeline(context, ItemType::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let r = self.item_list();
        if context == "range" {
            self.range_depth -= 1;
        }
        let (list, next) = r?;
        let else_list = match next {
            Parsed::End => None,
            Parsed::Else if context == "if" && self.peek().typ == ItemType::If => {
                self.next();
                Some(List {
                    nodes: vec![Node::If(self.control("if")?)],
                })
            }
            Parsed::Else => {
                let (else_list, next) = self.item_list()?;
                if !matches!(next, Parsed::End) {
                    return Err(format!("expected end; found {}", next.describe()));
                }
                Some(else_list)
            }
            Parsed::Node(_) => unreachable!("item_list returns only end or else"),
        };
        Ok(Branch {
            pos: pipe.pos,
            pipe,
            list,
            else_list,
        })
    }

    fn template_name(&mut self, token: &Item, context: &str) -> Fail<String> {
        match token.typ {
            ItemType::String | ItemType::RawString => {
                unquote(&token.val).ok_or_else(|| "invalid syntax".to_string())
            }
            _ => Err(self.unexpected(token, context)),
        }
    }

    fn block_control(&mut self) -> Fail<Node> {
        let context = "block clause";
        let token = self.next_non_space();
        let name = self.template_name(&token, context)?;
        let pipe = self.pipeline(context, ItemType::RightDelim)?;
        let saved = self.save();
        let r = self.item_list();
        let r = match r {
            Ok((root, Parsed::End)) => self.add(&name, root),
            Ok((_, end)) => Err(format!("unexpected {} in {context}", end.describe())),
            Err(e) => Err(e),
        };
        self.restore(saved);
        r?;
        Ok(Node::Template {
            pos: token.pos,
            name,
            pipe: Some(pipe),
        })
    }

    fn template_control(&mut self) -> Fail<Node> {
        let context = "template clause";
        let token = self.next_non_space();
        let name = self.template_name(&token, context)?;
        let mut pipe = None;
        if self.next_non_space().typ != ItemType::RightDelim {
            self.backup();
            pipe = Some(self.pipeline(context, ItemType::RightDelim)?);
        }
        Ok(Node::Template {
            pos: token.pos,
            name,
            pipe,
        })
    }

    fn pipeline(&mut self, context: &str, end: ItemType) -> Fail<Pipe> {
        self.enter()?;
        let r = self.pipeline_body(context, end);
        self.depth -= 1;
        r
    }

    fn pipeline_body(&mut self, context: &str, end: ItemType) -> Fail<Pipe> {
        let token = self.peek_non_space();
        let mut pipe = Pipe {
            pos: token.pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        self.declarations(&mut pipe, context)?;
        loop {
            let token = self.next_non_space();
            match token.typ {
                t if t == end => {
                    check_pipeline(&pipe, context)?;
                    return Ok(pipe);
                }
                ItemType::Bool
                | ItemType::CharConstant
                | ItemType::Complex
                | ItemType::Dot
                | ItemType::Field
                | ItemType::Identifier
                | ItemType::Number
                | ItemType::Nil
                | ItemType::RawString
                | ItemType::String
                | ItemType::Variable
                | ItemType::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return Err(self.unexpected(&token, context)),
            }
        }
    }

    /// `$x :=`, `$x =`, and `$i, $v :=` in a range.
    fn declarations(&mut self, pipe: &mut Pipe, context: &str) -> Fail<()> {
        loop {
            let v = self.peek_non_space();
            if v.typ != ItemType::Variable {
                return Ok(());
            }
            self.next();
            let after = self.peek();
            let next = self.peek_non_space();
            match next.typ {
                ItemType::Assign | ItemType::Declare => {
                    pipe.is_assign = next.typ == ItemType::Assign;
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    return Ok(());
                }
                ItemType::Char if next.val == "," => {
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    if context == "range" && pipe.decl.len() < 2 {
                        match self.peek_non_space().typ {
                            ItemType::Variable | ItemType::RightDelim | ItemType::RightParen => {
                                continue
                            }
                            _ => return Err("range can only initialize variables".into()),
                        }
                    }
                    return Err(format!("too many declarations in {context}"));
                }
                _ if after.typ == ItemType::Space => {
                    self.backup3(v, after);
                    return Ok(());
                }
                _ => {
                    self.backup2(v);
                    return Ok(());
                }
            }
        }
    }

    fn command(&mut self) -> Fail<Command> {
        let pos = self.peek_non_space().pos;
        let mut cmd = Command {
            pos,
            args: Vec::new(),
        };
        loop {
            self.peek_non_space();
            if let Some(op) = self.operand()? {
                cmd.args.push(op);
            }
            let token = self.next();
            match token.typ {
                ItemType::Space => continue,
                ItemType::RightDelim | ItemType::RightParen => self.backup(),
                ItemType::Pipe => {}
                _ => return Err(self.unexpected(&token, "operand")),
            }
            break;
        }
        if cmd.args.is_empty() {
            return Err("empty command".into());
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> Fail<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().typ != ItemType::Field {
            return Ok(Some(node));
        }
        let pos = self.peek().pos;
        let mut fields = Vec::new();
        while self.peek().typ == ItemType::Field {
            fields.push(self.next().val[1..].to_string());
        }
        Ok(Some(match node {
            Arg::Field { mut ident, .. } => {
                ident.extend(fields);
                Arg::Field { pos, ident }
            }
            Arg::Variable { mut ident, .. } => {
                ident.extend(fields);
                Arg::Variable { pos, ident }
            }
            n @ (Arg::Bool { .. }
            | Arg::String { .. }
            | Arg::Number { .. }
            | Arg::Nil { .. }
            | Arg::Dot { .. }) => {
                return Err(format!(
                    "unexpected . after term {}",
                    super::quote::quote(&n.to_string())
                ));
            }
            n => Arg::Chain {
                pos,
                node: Box::new(n),
                fields,
            },
        }))
    }

    fn term(&mut self) -> Fail<Option<Arg>> {
        let token = self.next_non_space();
        let pos = token.pos;
        Ok(Some(match token.typ {
            ItemType::Identifier => {
                if !(self.has_func)(&token.val) {
                    return Err(format!(
                        "function {} not defined",
                        super::quote::quote(&token.val)
                    ));
                }
                Arg::Identifier {
                    pos,
                    name: token.val,
                }
            }
            ItemType::Dot => Arg::Dot { pos },
            ItemType::Nil => Arg::Nil { pos },
            ItemType::Variable => {
                let ident: Vec<String> = token.val.split('.').map(String::from).collect();
                if !self.vars.iter().any(|v| *v == ident[0]) {
                    return Err(format!(
                        "undefined variable {}",
                        super::quote::quote(&ident[0])
                    ));
                }
                Arg::Variable { pos, ident }
            }
            ItemType::Field => Arg::Field {
                pos,
                ident: token.val[1..].split('.').map(String::from).collect(),
            },
            ItemType::Bool => Arg::Bool {
                pos,
                val: token.val == "true",
            },
            ItemType::CharConstant | ItemType::Complex | ItemType::Number => {
                let num = Number::parse(
                    &token.val,
                    token.typ == ItemType::CharConstant,
                    token.typ == ItemType::Complex,
                )?;
                Arg::Number { pos, num }
            }
            ItemType::LeftParen => Arg::Pipe(Box::new(
                self.pipeline("parenthesized pipeline", ItemType::RightParen)?,
            )),
            ItemType::String | ItemType::RawString => {
                let text = unquote(&token.val).ok_or("invalid syntax")?;
                Arg::String {
                    pos,
                    quoted: token.val,
                    text,
                }
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

fn check_pipeline(pipe: &Pipe, context: &str) -> Fail<()> {
    if pipe.cmds.is_empty() {
        return Err(format!("missing value for {context}"));
    }
    for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
        if matches!(
            c.args[0],
            Arg::Bool { .. }
                | Arg::Dot { .. }
                | Arg::Nil { .. }
                | Arg::Number { .. }
                | Arg::String { .. }
        ) {
            return Err(format!(
                "non executable command in pipeline stage {}",
                i + 1
            ));
        }
    }
    Ok(())
}
