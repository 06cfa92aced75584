//! shoal's renderer, `shoal render`: consul-template compatible config
//! rendering. [`template`] is Go's `text/template` reimplemented exactly (so
//! existing templates render byte for byte as before); consul-template's
//! functions, the dependency watcher, its config and the reload/exec logic
//! build on it.
#![forbid(unsafe_code)]

pub mod template;

pub mod deps;
mod error;
pub mod funcs;
pub mod source;

pub use error::{Error, Result};
