//! Evaluation of pipelines, commands, fields, variables and calls, with
//! Go's distinctions that show in output and errors: a missing value
//! (`<no value>`) versus `nil`, and a value still wrapped in an
//! `interface{}` (a map or slice element of JSON data) versus a concrete one.

use super::builtins::{self, Builtin, Param};
use super::exec::{At, ExecResult, State};
use super::node::{Arg, Command, Pipe};
use super::number::Number;
use super::template::MissingKey;
use super::value::{Value, ARITY_PREFIX};

/// The one function the engine runs itself when the caller registers it
/// (consul-template's `executeTemplate`): it needs the template set.
pub const EXECUTE_TEMPLATE: &str = "executeTemplate";

/// A value during evaluation, as Go's `reflect.Value` distinguishes it.
#[derive(Clone, Debug)]
pub(crate) enum Ev {
    /// The invalid value: a missing map key, no data. Prints `<no value>`.
    Missing,
    /// A value of static type `interface{}` (an element of a JSON list or
    /// map); field errors name its type as `interface {}`.
    Iface(Value),
    /// A concrete value.
    Plain(Value),
}

impl Ev {
    pub fn from_data(v: &Value) -> Ev {
        match v {
            Value::Nil => Ev::Missing,
            v => Ev::Plain(v.clone()),
        }
    }

    /// The value as a function argument sees it (a missing one is nil).
    pub fn value(&self) -> Value {
        match self {
            Ev::Missing => Value::Nil,
            Ev::Iface(v) | Ev::Plain(v) => v.clone(),
        }
    }

    pub fn as_value(&self) -> Option<&Value> {
        match self {
            Ev::Missing => None,
            Ev::Iface(v) | Ev::Plain(v) => Some(v),
        }
    }

    pub fn truthy(&self) -> bool {
        self.as_value().is_some_and(Value::truthy)
    }

    /// The type Go's field errors name (the static type).
    pub fn type_name(&self) -> String {
        match self {
            Ev::Missing => "<nil>".into(),
            Ev::Iface(_) => "interface {}".into(),
            Ev::Plain(v) => v.type_name(),
        }
    }

    /// What a pipeline stage leaves: an `interface{}` is unwrapped, and a
    /// nil one becomes the missing value (Go's `reflect.ValueOf(v.Interface())`).
    fn unwrap_stage(self) -> Ev {
        match self {
            Ev::Iface(Value::Nil) => Ev::Missing,
            Ev::Iface(v) => Ev::Plain(v),
            e => e,
        }
    }
}

impl<'a> State<'a> {
    pub fn eval_pipeline(&mut self, dot: &Ev, pipe: &'a Pipe) -> ExecResult<Ev> {
        self.at = At::Pipe(pipe);
        let mut value: Option<Ev> = None;
        for cmd in &pipe.cmds {
            let v = self.eval_command(dot, cmd, value.take())?;
            value = Some(v.unwrap_stage());
        }
        let value = value.unwrap_or(Ev::Missing);
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, value.clone())?;
            } else {
                self.push(name, value.clone());
            }
        }
        Ok(value)
    }

    /// A parenthesised pipeline: one level of the depth budget.
    fn eval_nested_pipeline(&mut self, dot: &Ev, pipe: &'a Pipe) -> ExecResult<Ev> {
        self.enter()?;
        let r = self.eval_pipeline(dot, pipe);
        self.leave();
        r
    }

    fn not_a_function(&self, args: &[Arg], fin: &Option<Ev>) -> ExecResult<()> {
        if args.len() > 1 || fin.is_some() {
            return self.fail(format!("can't give argument to non-function {}", args[0]));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Ev, cmd: &'a Command, fin: Option<Ev>) -> ExecResult<Ev> {
        let first = &cmd.args[0];
        match first {
            Arg::Field { ident, .. } => {
                self.at = At::Arg(first);
                return self.eval_field_chain(dot, dot.clone(), first, ident, Some(&cmd.args), fin);
            }
            Arg::Chain { .. } => return self.eval_chain(dot, first, Some(&cmd.args), fin),
            Arg::Identifier { name, .. } => {
                self.at = At::Arg(first);
                return self.eval_function(dot, name, cmd, &cmd.args, fin);
            }
            Arg::Pipe(p) => {
                self.not_a_function(&cmd.args, &fin)?;
                return self.eval_nested_pipeline(dot, p);
            }
            Arg::Variable { .. } => return self.eval_variable(dot, first, Some(&cmd.args), fin),
            _ => {}
        }
        self.at = At::Arg(first);
        self.not_a_function(&cmd.args, &fin)?;
        match first {
            Arg::Bool { val, .. } => Ok(Ev::Plain(Value::Bool(*val))),
            Arg::Dot { .. } => Ok(dot.clone()),
            Arg::Nil { .. } => self.fail("nil is not a command"),
            Arg::Number { num, .. } => self.ideal_constant(num),
            Arg::String { text, .. } => Ok(Ev::Plain(Value::str(text))),
            other => self.fail(format!(
                "can't evaluate command {}",
                super::quote::quote(&other.to_string())
            )),
        }
    }

    /// Go's `idealConstant`: `1` is an int, `1.0`/`1e3` a float64.
    fn ideal_constant(&self, num: &Number) -> ExecResult<Ev> {
        if num.complex {
            return self.fail(format!("complex constant {} is not supported", num.text));
        }
        if num.is_float_constant() {
            return Ok(Ev::Plain(Value::Float(num.float.unwrap_or(0.0))));
        }
        if let Some(i) = num.int {
            return Ok(Ev::Plain(Value::Int(i)));
        }
        if num.uint.is_some() {
            return self.fail(format!("{} overflows int", num.text));
        }
        Ok(Ev::Missing)
    }

    fn eval_variable(
        &mut self,
        dot: &Ev,
        node: &'a Arg,
        args: Option<&'a [Arg]>,
        fin: Option<Ev>,
    ) -> ExecResult<Ev> {
        let Arg::Variable { ident, .. } = node else {
            unreachable!("eval_variable on a variable")
        };
        self.at = At::Arg(node);
        let value = self.var_value(&ident[0])?;
        if ident.len() == 1 {
            if let Some(args) = args {
                self.not_a_function(args, &fin)?;
            }
            return Ok(value);
        }
        self.eval_field_chain(dot, value, node, &ident[1..], args, fin)
    }

    fn eval_chain(
        &mut self,
        dot: &Ev,
        node: &'a Arg,
        args: Option<&'a [Arg]>,
        fin: Option<Ev>,
    ) -> ExecResult<Ev> {
        let Arg::Chain {
            node: inner,
            fields,
            ..
        } = node
        else {
            unreachable!("eval_chain on a chain")
        };
        self.at = At::Arg(node);
        if let Arg::Nil { .. } = inner.as_ref() {
            return self.fail(format!("indirection through explicit nil in {node}"));
        }
        let pipe = self.eval_arg(dot, Param::Untyped, inner)?;
        self.eval_field_chain(dot, pipe, node, fields, args, fin)
    }

    fn eval_field_chain(
        &mut self,
        dot: &Ev,
        mut receiver: Ev,
        node: &'a Arg,
        ident: &'a [String],
        args: Option<&'a [Arg]>,
        fin: Option<Ev>,
    ) -> ExecResult<Ev> {
        let n = ident.len();
        for name in &ident[..n - 1] {
            receiver = self.eval_field(dot, name, node, None, None, receiver)?;
        }
        self.eval_field(dot, &ident[n - 1], node, args, fin, receiver)
    }

    /// Go's `evalField`: a method or field of an object, or a map key.
    fn eval_field(
        &mut self,
        dot: &Ev,
        name: &str,
        node: &'a Arg,
        args: Option<&'a [Arg]>,
        fin: Option<Ev>,
        receiver: Ev,
    ) -> ExecResult<Ev> {
        let has_args = args.is_some_and(|a| a.len() > 1) || fin.is_some();
        let typ = receiver.type_name();
        let value = match &receiver {
            Ev::Missing => {
                if self.missing_key == MissingKey::Error {
                    return self.fail(format!(
                        "nil data; no entry for key {}",
                        super::quote::quote(name)
                    ));
                }
                return Ok(Ev::Missing);
            }
            Ev::Iface(Value::Nil) => {
                return self.fail(format!("nil pointer evaluating {typ}.{name}"))
            }
            Ev::Iface(v) | Ev::Plain(v) => v.clone(),
        };
        match &value {
            Value::Object(o) => {
                // Methods first, as Go looks them up before fields.
                let field = if has_args { None } else { o.field(name) };
                if field.is_none() {
                    let mut argv = Vec::new();
                    for a in args.map_or(&[][..], |a| &a[1..]) {
                        argv.push(self.eval_arg(dot, Param::Any, a)?.value());
                    }
                    if let Some(f) = &fin {
                        argv.push(f.value());
                    }
                    if let Some(r) = o.method(name, &argv) {
                        if r.is_err() {
                            self.at = At::Arg(node);
                        }
                        return self.call_result(name, r);
                    }
                }
                self.at = At::Arg(node);
                let field = if has_args { o.field(name) } else { field };
                if let Some(v) = field {
                    if has_args {
                        return self.fail(format!(
                            "{name} has arguments but cannot be invoked as function"
                        ));
                    }
                    return Ok(Ev::Plain(v));
                }
                if o.entries().is_some() {
                    return self.missing_key_value(name, o.zero_element());
                }
                self.fail(format!("can't evaluate field {name} in type {typ}"))
            }
            Value::Map(m) => {
                if has_args {
                    return self.fail(format!("{name} is not a method but has arguments"));
                }
                match m.get(name) {
                    Some(v) => Ok(Ev::Iface(v.clone())),
                    None => self.missing_key_value(name, Value::Nil),
                }
            }
            Value::Nil => self.fail(format!("nil pointer evaluating {typ}.{name}")),
            _ => self.fail(format!("can't evaluate field {name} in type {typ}")),
        }
    }

    /// A function's or method's result: its error as Go reports it (an
    /// arity error as the engine's own check words it).
    fn call_result(&self, name: &str, r: Result<Value, String>) -> ExecResult<Ev> {
        match r {
            Ok(v) => Ok(Ev::Plain(v)),
            Err(e) if e.starts_with(ARITY_PREFIX) => self.fail(e),
            Err(e) => self.fail(format!("error calling {name}: {e}")),
        }
    }

    fn missing_key_value(&self, name: &str, zero: Value) -> ExecResult<Ev> {
        match self.missing_key {
            MissingKey::Default => Ok(Ev::Missing),
            MissingKey::Zero => Ok(Ev::Iface(zero)),
            MissingKey::Error => self.fail(format!(
                "map has no entry for key {}",
                super::quote::quote(name)
            )),
        }
    }

    /// Go's `evalArg` for a parameter of the given kind.
    pub fn eval_arg(&mut self, dot: &Ev, param: Param, n: &'a Arg) -> ExecResult<Ev> {
        self.at = At::Arg(n);
        let v = match n {
            Arg::Dot { .. } => dot.clone(),
            Arg::Nil { .. } => {
                return match param {
                    Param::Any => Ok(Ev::Iface(Value::Nil)),
                    Param::Value | Param::Untyped => Ok(Ev::Missing),
                    Param::Str => self.fail("cannot assign nil to string"),
                }
            }
            Arg::Field { ident, .. } => {
                self.eval_field_chain(dot, dot.clone(), n, ident, None, None)?
            }
            Arg::Variable { .. } => self.eval_variable(dot, n, None, None)?,
            Arg::Pipe(p) => self.eval_nested_pipeline(dot, p)?,
            Arg::Identifier { name, .. } => {
                self.at = At::Arg(n);
                self.eval_function_node(dot, name, At::Arg(n), n, None)?
            }
            Arg::Chain { .. } => self.eval_chain(dot, n, None, None)?,
            Arg::String { text, .. } => return Ok(Ev::Plain(Value::str(text))),
            Arg::Bool { val, .. } if param != Param::Str => {
                return Ok(Ev::Plain(Value::Bool(*val)))
            }
            Arg::Number { num, .. } if param != Param::Str => return self.ideal_constant(num),
            other => return self.fail(format!("expected string; found {other}")),
        };
        self.validate(v, param)
    }

    /// Go's `validateType` for our parameter kinds.
    fn validate(&self, v: Ev, param: Param) -> ExecResult<Ev> {
        match (param, v) {
            (Param::Any, Ev::Missing) => Ok(Ev::Iface(Value::Nil)),
            (Param::Str, Ev::Missing) => self.fail("invalid value; expected string"),
            (Param::Str, Ev::Plain(Value::String(s)) | Ev::Iface(Value::String(s))) => {
                Ok(Ev::Plain(Value::String(s)))
            }
            (Param::Str, Ev::Iface(Value::Nil)) => {
                self.fail("wrong type for value; expected string; got interface {}")
            }
            (Param::Str, Ev::Plain(v) | Ev::Iface(v)) => self.fail(format!(
                "wrong type for value; expected string; got {}",
                v.type_name()
            )),
            (_, v) => Ok(v),
        }
    }

    fn eval_function(
        &mut self,
        dot: &Ev,
        name: &str,
        cmd: &'a Command,
        args: &'a [Arg],
        fin: Option<Ev>,
    ) -> ExecResult<Ev> {
        self.eval_function_node(dot, name, At::Cmd(cmd), &args[0], Some((args, fin)))
    }

    /// Looks the function up (user functions shadow built-ins, as in Go)
    /// and calls it.
    fn eval_function_node(
        &mut self,
        dot: &Ev,
        name: &str,
        call_at: At<'a>,
        ident: &'a Arg,
        call: Option<(&'a [Arg], Option<Ev>)>,
    ) -> ExecResult<Ev> {
        self.at = At::Arg(ident);
        let (args, fin) = match call {
            Some((args, fin)) => (&args[1..], fin),
            None => (&[][..], None),
        };
        if name == EXECUTE_TEMPLATE && self.funcs.contains_key(name) {
            let mut argv = Vec::with_capacity(args.len() + 1);
            for a in args {
                argv.push(self.eval_arg(dot, Param::Any, a)?);
            }
            if let Some(f) = fin {
                argv.push(f);
            }
            self.at = call_at;
            let (tname, data) = match argv.as_slice() {
                [n] => (n.value(), Value::Nil),
                [n, d] => (n.value(), d.value()),
                _ => {
                    return self.fail(format!(
                        "error calling executeTemplate: executeTemplate: wrong number of arguments, expected 1 or 2, but got {}",
                        argv.len()
                    ))
                }
            };
            let Some(tname) = tname.as_str().map(str::to_string) else {
                return self.fail(format!(
                    "wrong type for value; expected string; got {}",
                    argv[0].type_name()
                ));
            };
            let out = self.execute_template_to_string(&tname, Ev::from_data(&data))?;
            return Ok(Ev::from_data(&Value::from(out)));
        }
        if let Some(f) = self.funcs.get(name) {
            let f = f.clone();
            let mut argv = Vec::with_capacity(args.len() + 1);
            for a in args {
                argv.push(self.eval_arg(dot, Param::Any, a)?.value());
            }
            if let Some(f) = &fin {
                argv.push(f.value());
            }
            let r = f(&argv);
            // Go moves the error position only when the call fails.
            match &r {
                Err(e) if e.starts_with(ARITY_PREFIX) => self.at = At::Arg(ident),
                Err(_) => self.at = call_at,
                Ok(_) => {}
            }
            return self.call_result(name, r);
        }
        let Some(b) = builtins::lookup(name) else {
            return self.fail(format!(
                "{} is not a defined function",
                super::quote::quote(name)
            ));
        };
        self.call_builtin(dot, b, call_at, args, fin)
    }

    fn call_builtin(
        &mut self,
        dot: &Ev,
        b: &Builtin,
        call_at: At<'a>,
        args: &'a [Arg],
        fin: Option<Ev>,
    ) -> ExecResult<Ev> {
        let num_in = args.len() + usize::from(fin.is_some());
        let fixed = b.fixed.len();
        if b.variadic.is_some() {
            if num_in < fixed {
                return self.fail(format!(
                    "wrong number of args for {}: want at least {} got {}",
                    b.name,
                    fixed,
                    args.len()
                ));
            }
        } else if num_in != fixed {
            return self.fail(format!(
                "wrong number of args for {}: want {} got {}",
                b.name, fixed, num_in
            ));
        }
        let param_at = |i: usize| {
            if i < fixed {
                b.fixed[i]
            } else {
                b.variadic.unwrap_or(Param::Any)
            }
        };
        if b.name == "and" || b.name == "or" {
            let want = b.name == "or";
            let mut v = Ev::Missing;
            for a in args {
                v = self.eval_arg(dot, Param::Value, a)?;
                if v.truthy() == want {
                    return Ok(v);
                }
            }
            if let Some(f) = fin {
                v = f;
            }
            return Ok(v);
        }
        let mut argv = Vec::with_capacity(num_in);
        for (i, a) in args.iter().enumerate() {
            argv.push(self.eval_arg(dot, param_at(i), a)?);
        }
        if let Some(f) = fin {
            let p = param_at(num_in - 1);
            argv.push(self.validate(f, p)?);
        }
        let call_name = if b.name == "call" {
            args.first().map(|a| a.to_string())
        } else {
            None
        };
        match (b.run)(&argv, call_name.as_deref()) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.at = call_at;
                self.fail(format!("error calling {}: {e}", b.name))
            }
        }
    }
}
