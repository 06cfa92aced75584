//! The dynamic value a template works on, modelled on what Go's reflection
//! sees: the JSON-like kinds plus [`Object`] for the Go structs and typed
//! values of consul-template (services, nodes, KV pairs, the scratch pad).
//!
//! Values are cheap to clone (strings, lists and maps are reference counted)
//! because the evaluator passes them around by value the way Go passes
//! `reflect.Value`s.

use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

/// A template function: receives the evaluated arguments (the piped value,
/// if any, is the last one, as in Go; a missing value arrives as
/// [`Value::Nil`]) and returns a value or an error message. The message is
/// reported as Go reports an error returned by a function:
/// `error calling NAME: MESSAGE`.
///
/// A function checks its own arity: return the text of
/// [`wrong_number_of_args`] and the engine reports it as Go's own argument
/// check does (at the function's name, without `error calling`).
pub type Func = Rc<dyn Fn(&[Value]) -> Result<Value, String>>;

/// Functions by name, as Go's `template.FuncMap`. The names must be known
/// when a template is parsed (Go rejects an undefined function at parse
/// time); the functions themselves may be replaced at execution time with
/// [`super::Template::execute_with`].
pub type FuncMap = BTreeMap<String, Func>;

/// A Go value as text/template sees it.
///
/// JSON data decodes the way Go's `encoding/json` decodes into
/// `interface{}`: objects to [`Value::Map`], arrays to [`Value::List`],
/// every number to [`Value::Float`] (see [`Value::from_json`]).
#[derive(Clone, Default)]
pub enum Value {
    /// Go's `nil` (a nil interface, pointer, map or slice). Prints as
    /// `<nil>`; `range` over it runs zero times (its `else`), as over a nil
    /// slice. A missing map key prints as `<no value>` instead, which the
    /// evaluator tracks separately; as the data of `execute`, `Nil` is Go's
    /// `nil` data (`{{.}}` prints `<no value>`).
    #[default]
    Nil,
    /// `bool`.
    Bool(bool),
    /// `int` (Go's `int` is 64 bits on the platforms that matter).
    Int(i64),
    /// `uint`.
    Uint(u64),
    /// `float64`.
    Float(f64),
    /// `string`.
    String(Rc<str>),
    /// `[]interface{}`: a slice of values.
    List(Rc<Vec<Value>>),
    /// `map[string]interface{}`: iterated (by `range`, printing) in sorted
    /// key order, as Go does for maps.
    Map(Rc<BTreeMap<String, Value>>),
    /// A Go struct or other typed value provided by the caller.
    Object(Rc<dyn Object>),
    /// A function value (for Go's `call` built-in).
    Func(Func),
}

/// A Go struct (or pointer to one, or any typed value) exposed to templates.
///
/// Implement it for consul-template's types: `field` answers `.Address`,
/// `method` answers `.Tags.Contains "x"` or `$s.Get "k"`, `display` is what
/// `{{.}}` and `%v` print. Lookups of `.Name` try `method(name, [])` first
/// and then `field(name)`, as Go tries methods before fields.
pub trait Object {
    /// Go's type name as `%T` prints it, e.g. `*dependency.HealthService`.
    fn type_name(&self) -> &str;

    /// The exported field `name`, or `None` if the type has no such field
    /// (the evaluator then reports Go's `can't evaluate field NAME in type
    /// TYPE`).
    fn field(&self, name: &str) -> Option<Value>;

    /// Calls method `name` with `args`; `None` if there is no such method.
    /// An `Err` is reported as Go reports a method's returned error.
    fn method(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        let _ = (name, args);
        None
    }

    /// What `print`, `%v` and `%s` show (Go's `fmt` output for the value,
    /// e.g. `&{node1 10.0.0.1 ...}` for a struct pointer).
    fn display(&self) -> String;

    /// What an action (`{{.}}`) prints. Go dereferences a pointer before
    /// printing an action's value, so a `*T` prints `{...}` here but
    /// `&{...}` through `print`/`printf`; override for pointer types.
    fn display_action(&self) -> String {
        self.display()
    }

    /// Go's truthiness (`if`, `and`, `or`, `not`): a non-nil pointer or a
    /// struct is true.
    fn truthy(&self) -> bool {
        true
    }

    /// The elements for `range`, `len`, `index` and `slice` when the object
    /// is a typed slice (e.g. `[]string` with methods); `None` if it is not
    /// a collection.
    fn elements(&self) -> Option<Vec<Value>> {
        None
    }

    /// The entries (sorted by key) when the object is a typed map; `None` if
    /// it is not a map. With `elements` returning `None` too, `range` over
    /// the object is Go's `range can't iterate over` error.
    fn entries(&self) -> Option<Vec<(String, Value)>> {
        None
    }

    /// What `index` returns for a missing key of a typed map: Go returns the
    /// zero value of the element type (`""` for `map[string]string`).
    fn zero_element(&self) -> Value {
        Value::Nil
    }
}

/// Go's arity error for a function or method `name` with `want` fixed
/// parameters (`variadic`: at least that many) called with `got`
/// arguments. A [`Func`] or [`Object::method`] returning exactly this text
/// gets Go's report of it.
pub fn wrong_number_of_args(name: &str, want: usize, variadic: bool, got: usize) -> String {
    let at_least = if variadic { "at least " } else { "" };
    format!("{ARITY_PREFIX}{name}: want {at_least}{want} got {got}")
}

pub(crate) const ARITY_PREFIX: &str = "wrong number of args for ";

impl Value {
    /// Builds a string value.
    pub fn str(s: &str) -> Value {
        Value::String(Rc::from(s))
    }

    /// Builds a list value.
    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Rc::new(items))
    }

    /// Builds a map value from `(key, value)` pairs.
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(Rc::new(
            entries.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        ))
    }

    /// Wraps an [`Object`].
    pub fn object(o: impl Object + 'static) -> Value {
        Value::Object(Rc::new(o))
    }

    /// Wraps a closure as a function value.
    pub fn func(f: impl Fn(&[Value]) -> Result<Value, String> + 'static) -> Value {
        Value::Func(Rc::new(f))
    }

    /// Go's truthiness: false, 0, nil, and empty strings, lists and maps are
    /// false; everything else is true.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Uint(u) => *u != 0,
            Value::Float(f) => *f != 0.0,
            Value::String(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Object(o) => o.truthy(),
            Value::Func(_) => true,
        }
    }

    /// The string inside a [`Value::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Go's `%T` name of the value.
    pub fn type_name(&self) -> String {
        match self {
            Value::Nil => "<nil>".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Uint(_) => "uint".into(),
            Value::Float(_) => "float64".into(),
            Value::String(_) => "string".into(),
            Value::List(_) => "[]interface {}".into(),
            Value::Map(_) => "map[string]interface {}".into(),
            Value::Object(o) => o.type_name().into(),
            Value::Func(_) => "func(...interface {}) (interface {}, error)".into(),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::str(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(Rc::from(s))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<u64> for Value {
    fn from(u: u64) -> Value {
        Value::Uint(u)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float(f)
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Value {
        Value::list(items)
    }
}

impl From<BTreeMap<String, Value>> for Value {
    fn from(m: BTreeMap<String, Value>) -> Value {
        Value::Map(Rc::new(m))
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => write!(f, "Nil"),
            Value::Bool(b) => write!(f, "Bool({b})"),
            Value::Int(i) => write!(f, "Int({i})"),
            Value::Uint(u) => write!(f, "Uint({u})"),
            Value::Float(x) => write!(f, "Float({x:?})"),
            Value::String(s) => write!(f, "String({s:?})"),
            Value::List(l) => f.debug_list().entries(l.iter()).finish(),
            Value::Map(m) => f.debug_map().entries(m.iter()).finish(),
            Value::Object(o) => write!(f, "Object({})", o.type_name()),
            Value::Func(_) => write!(f, "Func"),
        }
    }
}

impl Value {
    /// Decodes JSON as Go's `encoding/json` decodes into `interface{}`:
    /// objects become maps, arrays lists, and every number a `float64`
    /// ([`Value::Float`]) — which is why `{{.n}}` of `{"n": 3}` prints `3`
    /// but `%d` of it prints `%!d(float64=3)`, exactly as in Go.
    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::str(s),
            serde_json::Value::Array(a) => Value::list(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => {
                Value::map(o.iter().map(|(k, v)| (k.clone(), Value::from_json(v))))
            }
        }
    }
}
