//! Why the proxy answered a request itself, and the one place that maps
//! each reason to a status and a body (as pingora's `fail_to_proxy`).

use hyper::StatusCode;
use std::time::Duration;

/// A request the proxy could not pass on, by whose fault.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The client sent something we refuse to forward.
    #[error("bad request: {0}")]
    Client(String),
    /// A request in an HTTP version the proxy does not speak (505).
    #[error("HTTP version not supported: {0}")]
    VersionNotSupported(String),
    /// A request needing something the proxy does not implement (501).
    #[error("not implemented: {0}")]
    NotImplemented(String),
    /// A request head over the size limit (431).
    #[error("request header fields too large: {0}")]
    HeadTooLarge(String),
    /// No route matches the host and path.
    #[error("no route for host {host:?} and path {path:?}")]
    NoRoute {
        /// Host as sent.
        host: String,
        /// Path as sent.
        path: String,
    },
    /// The service had no instance within the queue timeout.
    #[error("no instance of service {service:?} became available within {waited:?}")]
    NoInstance {
        /// Service name (with `tag.` when a tag subset was asked for).
        service: String,
        /// How long the request waited.
        waited: Duration,
    },
    /// Too many requests are already waiting for instances.
    #[error("too many requests waiting for service {0:?}")]
    QueueFull(String),
    /// Every attempt to reach an instance failed.
    #[error("upstream {service:?} failed: {reason}")]
    Upstream {
        /// Service name.
        service: String,
        /// The last failure.
        reason: String,
    },
    /// No instance answered within the per-attempt timeout.
    #[error("upstream {service:?} did not answer in time: {reason}")]
    UpstreamTimeout {
        /// Service name.
        service: String,
        /// The last attempt.
        reason: String,
    },
    /// The registry cannot be reached, so no instance can become known.
    #[error("no instance of service {service:?} is known: the registry is unreachable ({reason})")]
    RegistryUnreachable {
        /// Service name.
        service: String,
        /// Why the last query failed, with its causes.
        reason: String,
    },
    /// The request would come back to this proxy: the instance is one of
    /// its own listeners, or the request already passed through it.
    #[error("loop: instance {instance:?} of service {service:?} at {addr} is this proxy itself")]
    Loop {
        /// Service name.
        service: String,
        /// The instance that points back at the proxy.
        instance: String,
        /// Its address.
        addr: std::net::SocketAddr,
    },
    /// The request carries this proxy's own `Via` marker: it went round.
    #[error("loop: the request already passed through this proxy (Via {0})")]
    SeenBefore(String),
}

impl ProxyError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Client(_) => StatusCode::BAD_REQUEST,
            ProxyError::HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::VersionNotSupported(_) => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            ProxyError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::NoInstance { .. }
            | ProxyError::QueueFull(_)
            | ProxyError::RegistryUnreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Loop { .. } | ProxyError::SeenBefore(_) => StatusCode::LOOP_DETECTED,
        }
    }

    /// Whether the client connection closes after this answer (the
    /// client misbehaved: what follows on it cannot be trusted).
    pub fn closes(&self) -> bool {
        matches!(
            self,
            ProxyError::Client(_)
                | ProxyError::HeadTooLarge(_)
                | ProxyError::VersionNotSupported(_)
                | ProxyError::NotImplemented(_)
        )
    }

    /// The body the client gets: what went wrong, in one line.
    pub fn body(&self) -> String {
        format!("{self}\n")
    }
}
