//! The renderer's error type.

use std::path::PathBuf;

/// Errors of the consul-template layer. Template errors keep the engine's
/// Go-worded text (`template: FILE:LINE:COL: ...`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration (flags or HCL) is wrong; says what and where.
    #[error("{0}")]
    Config(String),
    /// A template failed to parse or execute.
    #[error("{0}")]
    Template(#[from] crate::template::Error),
    /// Templates that could not be read or parsed, every error at once.
    #[error("{0}")]
    Templates(String),
    /// Reading a source or writing a destination failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The catalog (shoal or Consul) could not be read.
    #[error("{0}")]
    Catalog(#[from] shoal_catalog::Error),
    /// A command or the `exec` child could not be run or failed.
    #[error("{0}")]
    Command(String),
}

impl Error {
    /// Shorthand for [`Error::Config`].
    pub fn config(msg: impl Into<String>) -> Error {
        Error::Config(msg.into())
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// Result alias of the renderer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
