//! [`Template`]: a named set of parsed templates (the main one plus those
//! from `define`/`block`), parsed with given delimiters and function names,
//! executed against a [`Value`].

use std::collections::BTreeMap;
use std::rc::Rc;

use super::error::{Error, Result};
use super::eval::Ev;
use super::exec::{At, Source, State, Tree};
use super::node::is_empty_tree;
use super::value::{FuncMap, Value};

/// What a missing map key evaluates to (Go's `missingkey=` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// `missingkey=default` / `invalid`: the "no value", printed `<no value>`.
    #[default]
    Default,
    /// `missingkey=zero`: the zero value of the map's element type (`<nil>`
    /// for the `map[string]interface{}` of JSON data).
    Zero,
    /// `missingkey=error`: execution stops with `map has no entry for key
    /// "K"` (consul-template's `error_on_missing_key`).
    Error,
}

/// Bounds that keep a hostile template from exhausting the stack or memory.
/// Exceeding one is an error, never a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of actions and parentheses the parser accepts.
    pub max_parse_depth: usize,
    /// Longest template text accepted, in bytes.
    pub max_template_bytes: usize,
    /// Deepest `template`/`block` call chain at execution (Go's is 100000,
    /// more than a thread's stack holds here).
    pub max_exec_depth: usize,
    /// Largest output, in bytes, before execution stops with an error.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_parse_depth: 200,
            max_template_bytes: 16 << 20,
            max_exec_depth: 1000,
            max_output_bytes: 256 << 20,
        }
    }
}

/// A parsed template and its associated templates, ready to execute.
///
/// Build it like Go's `template.New(name).Delims(l, r).Funcs(f).Parse(text)`;
/// Go's built-in functions are always available, and a function of the
/// [`FuncMap`] with the same name replaces a built-in.
#[derive(Clone)]
pub struct Template {
    name: String,
    left: String,
    right: String,
    funcs: FuncMap,
    missing_key: MissingKey,
    limits: Limits,
    trees: BTreeMap<String, Rc<Tree>>,
}

impl Template {
    /// An empty template set whose main template is `name` (the name shown
    /// in errors: consul-template uses the source file's path).
    pub fn new(name: &str) -> Template {
        Template {
            name: name.to_string(),
            left: "{{".into(),
            right: "}}".into(),
            funcs: FuncMap::new(),
            missing_key: MissingKey::Default,
            limits: Limits::default(),
            trees: BTreeMap::new(),
        }
    }

    /// Sets the action delimiters for the next [`Template::parse`]; an empty
    /// string means the default (`{{` or `}}`), as in Go.
    pub fn delims(mut self, left: &str, right: &str) -> Template {
        self.left = if left.is_empty() {
            "{{".into()
        } else {
            left.into()
        };
        self.right = if right.is_empty() {
            "}}".into()
        } else {
            right.into()
        };
        self
    }

    /// Adds functions (their names are checked at parse time).
    pub fn funcs(mut self, funcs: FuncMap) -> Template {
        self.funcs.extend(funcs);
        self
    }

    /// Sets what a missing map key does at execution.
    pub fn missing_key(mut self, missing_key: MissingKey) -> Template {
        self.missing_key = missing_key;
        self
    }

    /// Replaces the safety limits.
    pub fn limits(mut self, limits: Limits) -> Template {
        self.limits = limits;
        self
    }

    /// Parses `text` as the body of the main template; its `define`s and
    /// `block`s become associated templates. May be called again to add
    /// definitions, as Go's `Parse` may.
    pub fn parse(mut self, text: &str) -> Result<Template> {
        if text.len() > self.limits.max_template_bytes {
            let msg = format!(
                "template is {} bytes, more than the limit of {}",
                text.len(),
                self.limits.max_template_bytes
            );
            return Err(Error::parse(&self.name, 0, msg));
        }
        let funcs = &self.funcs;
        let has_func = |n: &str| funcs.contains_key(n) || super::builtins::lookup(n).is_some();
        let trees = super::parse::parse(
            &self.name,
            text,
            &self.left,
            &self.right,
            &has_func,
            self.limits.max_parse_depth,
        )?;
        let source = Rc::new(Source {
            parse_name: self.name.clone(),
            text: text.to_string(),
        });
        for (name, root) in trees {
            // Go's `associate`: an empty body never replaces a definition.
            if self.trees.contains_key(&name) && is_empty_tree(&root) {
                continue;
            }
            self.trees.insert(
                name,
                Rc::new(Tree {
                    root,
                    source: source.clone(),
                }),
            );
        }
        Ok(self)
    }

    /// The main template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Names of every defined template (the main one included once parsed),
    /// sorted.
    pub fn templates(&self) -> Vec<&str> {
        self.trees.keys().map(String::as_str).collect()
    }

    /// Executes the main template with `data` as `.` and `$`.
    pub fn execute(&self, data: &Value) -> Result<String> {
        self.execute_template_with(&self.name, data, &self.funcs)
    }

    /// Executes the main template with the functions replaced by `funcs`
    /// (same names as at parse time; consul-template's functions capture
    /// per-render state, so they are made anew for every render while the
    /// template is parsed once).
    pub fn execute_with(&self, data: &Value, funcs: &FuncMap) -> Result<String> {
        self.execute_template_with(&self.name, data, funcs)
    }

    /// Executes the associated template `name` (Go's `ExecuteTemplate`).
    pub fn execute_template(&self, name: &str, data: &Value) -> Result<String> {
        self.execute_template_with(name, data, &self.funcs)
    }

    fn execute_template_with(&self, name: &str, data: &Value, funcs: &FuncMap) -> Result<String> {
        let Some((key, tree)) = self.trees.get_key_value(name) else {
            if name == self.name {
                let msg = format!(
                    "{} is an incomplete or empty template",
                    super::quote::quote(name)
                );
                return Err(Error::exec_plain(name, msg));
            }
            let msg = format!(
                "template: no template {} associated with template {}",
                super::quote::quote(name),
                super::quote::quote(&self.name)
            );
            return Err(Error::plain(msg));
        };
        let dot = Ev::from_data(data);
        let mut state = State {
            trees: &self.trees,
            funcs,
            missing_key: self.missing_key,
            limits: &self.limits,
            name: key,
            source: &tree.source,
            at: At::None,
            vars: vec![("$".to_string(), dot.clone())],
            depth: 0,
            out: String::new(),
        };
        state.walk_list(&dot, &tree.root)?;
        Ok(state.out)
    }
}
