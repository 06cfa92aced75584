//! shoal's renderer, `shoal render`: consul-template compatible config
//! rendering. [`template`] is Go's `text/template` reimplemented exactly (so
//! existing templates render byte for byte as before); consul-template's
//! functions, the dependency watcher, its config and the reload/exec logic
//! build on it.
#![forbid(unsafe_code)]

pub mod template;

pub mod command;
pub mod config;
pub mod deps;
mod error;
pub mod funcs;
pub mod runner;
pub mod source;
pub mod stream_source;
pub mod watch;
pub mod write;

pub use error::{Error, Result};
