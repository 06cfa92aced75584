//! Execution: walks a parsed tree the way Go's `text/template` `state`
//! does — variables on a stack with marks, `if`/`with`/`range` with their
//! scoping, `break`/`continue`, `template` calls with a fresh `$` — and
//! writes the output. Evaluation of pipelines is in `eval`.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::error::Error;
use super::eval::Ev;
use super::fmt::display;
use super::node::{Arg, Branch, Command, List, Node, Pipe};
use super::template::{Limits, MissingKey};
use super::value::{FuncMap, Value};

/// The text a tree was parsed from and the name of that parse (what
/// positions in errors refer to).
pub(crate) struct Source {
    pub parse_name: String,
    pub text: String,
}

/// One named template: its body and where it came from.
pub(crate) struct Tree {
    pub root: List,
    pub source: Rc<Source>,
}

/// The node an error is reported at (Go's `state.at`).
#[derive(Clone, Copy)]
pub(crate) enum At<'a> {
    None,
    Node(&'a Node),
    Pipe(&'a Pipe),
    Cmd(&'a Command),
    Arg(&'a Arg),
}

impl At<'_> {
    fn pos_and_context(&self) -> Option<(usize, String)> {
        Some(match self {
            At::None => return None,
            At::Node(n) => (node_pos(n), n.to_string()),
            At::Pipe(p) => (p.pos, p.to_string()),
            At::Cmd(c) => (c.pos, c.to_string()),
            At::Arg(a) => (a.pos(), a.to_string()),
        })
    }
}

fn node_pos(n: &Node) -> usize {
    match n {
        Node::Text(_) => 0,
        Node::Action { pos, .. }
        | Node::Template { pos, .. }
        | Node::Break { pos }
        | Node::Continue { pos } => *pos,
        Node::If(b) | Node::Range(b) | Node::With(b) => b.pos,
    }
}

/// Depth levels one `executeTemplate` call counts for.
const EXECUTE_TEMPLATE_WEIGHT: usize = 4;

/// How a walk ended: normally or by `{{break}}` / `{{continue}}`.
#[derive(PartialEq, Eq)]
pub(crate) enum Flow {
    Normal,
    Break,
    Continue,
}

/// Execution state, like Go's `state`.
pub(crate) struct State<'a> {
    pub trees: &'a BTreeMap<String, Rc<Tree>>,
    pub funcs: &'a FuncMap,
    pub missing_key: MissingKey,
    pub limits: &'a Limits,
    /// Name of the template being executed (the `executing "NAME"` part).
    pub name: &'a str,
    pub source: &'a Source,
    pub at: At<'a>,
    pub vars: Vec<(String, Ev)>,
    pub depth: usize,
    /// Nodes walked so far, against `Limits::max_steps`.
    pub steps: u64,
    pub out: String,
}

pub(crate) type ExecResult<T> = Result<T, Error>;

impl<'a> State<'a> {
    /// Go's `state.errorf`: the message with the location and context of
    /// the current node.
    pub fn error(&self, message: impl Into<String>) -> Error {
        let Some((pos, context)) = self.at.pos_and_context() else {
            return Error::exec_plain(self.name, message);
        };
        let text = &self.source.text[..pos.min(self.source.text.len())];
        let line = 1 + text.matches('\n').count();
        let col = match text.rfind('\n') {
            Some(i) => pos - (i + 1),
            None => pos,
        };
        Error::exec(
            &self.source.parse_name,
            self.name,
            line,
            col,
            &context,
            message,
        )
    }

    pub fn fail<T>(&self, message: impl Into<String>) -> ExecResult<T> {
        Err(self.error(message))
    }

    fn write(&mut self, s: &str) -> ExecResult<()> {
        if self.out.len() + s.len() > self.limits.max_output_bytes {
            return self.fail(format!(
                "output exceeds the limit of {} bytes",
                self.limits.max_output_bytes
            ));
        }
        self.out.push_str(s);
        Ok(())
    }

    /// Counts one level of recursion (a control structure, a parenthesised
    /// pipeline or a template call) against the one depth budget, so that
    /// no template, however nested or recursive, can exhaust the stack.
    pub fn enter(&mut self) -> ExecResult<()> {
        if self.depth >= self.limits.max_exec_depth {
            return self.fail(format!(
                "exceeded maximum template depth ({})",
                self.limits.max_exec_depth
            ));
        }
        self.depth += 1;
        Ok(())
    }

    pub fn leave(&mut self) {
        self.depth -= 1;
    }

    pub fn mark(&self) -> usize {
        self.vars.len()
    }

    pub fn pop(&mut self, mark: usize) {
        self.vars.truncate(mark);
    }

    pub fn push(&mut self, name: &str, v: Ev) {
        self.vars.push((name.to_string(), v));
    }

    pub fn set_var(&mut self, name: &str, v: Ev) -> ExecResult<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => self.fail(format!("undefined variable: {name}")),
        }
    }

    fn set_top_var(&mut self, n: usize, v: Ev) {
        let i = self.vars.len() - n;
        self.vars[i].1 = v;
    }

    pub fn var_value(&self, name: &str) -> ExecResult<Ev> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => self.fail(format!("undefined variable: {name}")),
        }
    }

    pub fn walk_list(&mut self, dot: &Ev, list: &'a List) -> ExecResult<Flow> {
        for n in &list.nodes {
            let flow = self.walk(dot, n)?;
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &Ev, node: &'a Node) -> ExecResult<Flow> {
        self.at = At::Node(node);
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return self.fail(format!(
                "execution exceeded {} steps",
                self.limits.max_steps
            ));
        }
        match node {
            Node::Text(t) => self.write(t)?,
            Node::Action { pipe, .. } => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.at = At::Node(node);
                    self.print_value(&v, node)?;
                }
            }
            Node::If(b) => return self.walk_if_or_with(false, dot, b),
            Node::With(b) => return self.walk_if_or_with(true, dot, b),
            Node::Range(b) => return self.walk_range(dot, b),
            Node::Template { name, pipe, .. } => self.walk_template(dot, name, pipe.as_ref())?,
            Node::Break { .. } => return Ok(Flow::Break),
            Node::Continue { .. } => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn print_value(&mut self, v: &Ev, node: &Node) -> ExecResult<()> {
        match v {
            Ev::Missing => self.write("<no value>"),
            Ev::Plain(Value::Func(_)) | Ev::Iface(Value::Func(_)) => {
                let t = v.type_name();
                self.fail(format!("can't print {node} of type {t}"))
            }
            Ev::Plain(Value::String(s)) | Ev::Iface(Value::String(s)) => self.write(s),
            Ev::Plain(Value::Object(o)) | Ev::Iface(Value::Object(o)) => {
                let s = o.display_action();
                self.write(&s)
            }
            Ev::Plain(v) | Ev::Iface(v) => {
                let s = display(v);
                self.write(&s)
            }
        }
    }

    fn walk_if_or_with(&mut self, with: bool, dot: &Ev, b: &'a Branch) -> ExecResult<Flow> {
        self.enter()?;
        let mark = self.mark();
        let r = (|| {
            let val = self.eval_pipeline(dot, &b.pipe)?;
            if val.truthy() {
                let d = if with { &val } else { dot };
                self.walk_list(d, &b.list)
            } else if let Some(e) = &b.else_list {
                self.walk_list(dot, e)
            } else {
                Ok(Flow::Normal)
            }
        })();
        self.pop(mark);
        self.leave();
        r
    }

    fn walk_range(&mut self, dot: &Ev, b: &'a Branch) -> ExecResult<Flow> {
        self.enter()?;
        let outer = self.mark();
        let r = self.range_body(dot, b);
        self.pop(outer);
        self.leave();
        r.map(|_| Flow::Normal)
    }

    fn range_body(&mut self, dot: &Ev, b: &'a Branch) -> ExecResult<()> {
        let val = self.eval_pipeline(dot, &b.pipe)?;
        let mark = self.mark();
        let items: Vec<(Ev, Ev)> = match &val {
            // A nil from a function or field ranges like Go's nil slice or
            // map (consul-template's functions return those when empty).
            Ev::Missing | Ev::Plain(Value::Nil) => Vec::new(),
            Ev::Plain(Value::List(l)) | Ev::Iface(Value::List(l)) => l
                .iter()
                .enumerate()
                .map(|(i, e)| (Ev::Plain(Value::Int(i as i64)), Ev::Iface(e.clone())))
                .collect(),
            Ev::Plain(Value::Map(m)) | Ev::Iface(Value::Map(m)) => m
                .iter()
                .map(|(k, e)| (Ev::Plain(Value::str(k)), Ev::Iface(e.clone())))
                .collect(),
            Ev::Plain(Value::Object(o)) | Ev::Iface(Value::Object(o)) => {
                if let Some(elems) = o.elements() {
                    elems
                        .into_iter()
                        .enumerate()
                        .map(|(i, e)| (Ev::Plain(Value::Int(i as i64)), Ev::Plain(e)))
                        .collect()
                } else if let Some(entries) = o.entries() {
                    entries
                        .into_iter()
                        .map(|(k, e)| (Ev::Plain(Value::from(k)), Ev::Plain(e)))
                        .collect()
                } else {
                    return self.fail(format!(
                        "range can't iterate over {}",
                        display(&val.value())
                    ));
                }
            }
            v => return self.fail(format!("range can't iterate over {}", display(&v.value()))),
        };
        if items.is_empty() {
            if let Some(e) = &b.else_list {
                self.walk_list(dot, e)?;
            }
            return Ok(());
        }
        for (index, elem) in items {
            let decl = &b.pipe.decl;
            if !decl.is_empty() {
                if b.pipe.is_assign {
                    let first = if decl.len() > 1 {
                        index.clone()
                    } else {
                        elem.clone()
                    };
                    self.set_var(&decl[0], first)?;
                } else {
                    self.set_top_var(1, elem.clone());
                }
            }
            if decl.len() > 1 {
                if b.pipe.is_assign {
                    self.set_var(&decl[1], elem.clone())?;
                } else {
                    self.set_top_var(2, index);
                }
            }
            let flow = self.walk_list(&elem, &b.list);
            self.pop(mark);
            if flow? == Flow::Break {
                break;
            }
        }
        Ok(())
    }

    fn walk_template(&mut self, dot: &Ev, name: &str, pipe: Option<&'a Pipe>) -> ExecResult<()> {
        let at = self.at;
        let Some(tree) = self.trees.get(name) else {
            return self.fail(format!(
                "template {} not defined",
                super::quote::quote(name)
            ));
        };
        if self.depth >= self.limits.max_exec_depth {
            return self.fail(format!(
                "exceeded maximum template depth ({})",
                self.limits.max_exec_depth
            ));
        }
        let new_dot = match pipe {
            Some(p) => self.eval_pipeline(dot, p)?,
            None => Ev::Missing,
        };
        let tree: &'a Tree = tree;
        let r = self.run_tree(name, tree, new_dot);
        self.at = at;
        r
    }

    /// consul-template's `executeTemplate NAME [DATA]`: the named template
    /// run with DATA as dot (and `$`), its output returned as a string.
    pub fn execute_template_to_string(&mut self, name: &str, dot: Ev) -> ExecResult<String> {
        let at = self.at;
        let Some(tree) = self.trees.get(name) else {
            return self.fail(format!(
                "error calling executeTemplate: template: no template {} associated with template {}",
                super::quote::quote(name),
                super::quote::quote(self.name)
            ));
        };
        let tree: &'a Tree = tree;
        // A nested executeTemplate goes through the whole pipeline
        // evaluation on the stack: it counts for several levels of the one
        // depth budget so that recursion ends in an error, not an overflow.
        let mark = self.depth;
        for _ in 0..EXECUTE_TEMPLATE_WEIGHT {
            if let Err(e) = self.enter() {
                self.depth = mark;
                return Err(e);
            }
        }
        let saved_out = std::mem::take(&mut self.out);
        let r = self.run_tree(name, tree, dot);
        self.depth = mark;
        let rendered = std::mem::replace(&mut self.out, saved_out);
        self.at = at;
        r.map(|_| rendered)
    }

    /// Walks `tree` as template `name` with a fresh `$`, restoring the
    /// caller's variables and position afterwards.
    fn run_tree(&mut self, name: &str, tree: &'a Tree, new_dot: Ev) -> ExecResult<()> {
        let at = self.at;
        if self.depth >= self.limits.max_exec_depth {
            return self.fail(format!(
                "exceeded maximum template depth ({})",
                self.limits.max_exec_depth
            ));
        }
        let saved_vars =
            std::mem::replace(&mut self.vars, vec![("$".to_string(), new_dot.clone())]);
        let (saved_name, saved_source) = (self.name, self.source);
        self.name = self
            .trees
            .get_key_value(name)
            .map_or(saved_name, |(k, _)| k.as_str());
        self.source = &tree.source;
        let r = match self.enter() {
            Ok(()) => {
                let r = self.walk_list(&new_dot, &tree.root);
                self.leave();
                r
            }
            Err(e) => Err(e),
        };
        self.name = saved_name;
        self.source = saved_source;
        self.vars = saved_vars;
        self.at = at;
        r.map(|_| ())
    }
}
