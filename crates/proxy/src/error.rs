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
    /// The upstream did not answer within the request deadline.
    #[error("upstream {0:?} did not answer in time")]
    UpstreamTimeout(String),
}

impl ProxyError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Client(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::NoInstance { .. } | ProxyError::QueueFull(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}
