//! The catalog's error type.

/// Errors a catalog operation can end with. Each variant maps to one HTTP
/// status in the API crate, so the variant says who is at fault.
///
/// An error that passes through more hands is passed on as it is
/// (`clone`), never wrapped again in its own variant: `Storage(e.to_string())`
/// of a `Storage` error reads "storage error: storage error: ...".
#[derive(Clone, Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Error {
    /// The request itself is wrong (missing name, unknown referenced ID...).
    #[error("{0}")]
    Invalid(String),
    /// The thing the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Refused the way Consul's RPC layer refuses (unknown session, TTL
    /// out of range...): Consul answers these as 500 with the message, and
    /// clients match on that, so shoal does too.
    #[error("{0}")]
    Rejected(String),
    /// Not allowed, whoever asks (a second ACL bootstrap): 403.
    #[error("{0}")]
    Forbidden(String),
    /// The durable store failed; the write was not applied.
    #[error("storage error: {0}")]
    Storage(String),
    /// The registry is shutting down and takes no more writes.
    #[error("the catalog is shutting down")]
    Closed,
    /// A remote catalog answered with an unexpected status or body.
    #[error("remote catalog: {0}")]
    Remote(String),
}

/// Result alias for catalog operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }
}
