//! The agent's errors.

/// What can go wrong starting the agent's parts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The catalog refused or could not take a read or write.
    #[error(transparent)]
    Catalog(#[from] shoal_catalog::Error),
    /// The HTTP client used by HTTP checks could not be built.
    #[error("cannot build the HTTP check client: {0}")]
    HttpClient(String),
}

/// The agent's result type.
pub type Result<T> = std::result::Result<T, Error>;
