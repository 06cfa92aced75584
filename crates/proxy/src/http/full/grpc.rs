//! gRPC calls the proxy cannot pass on get a gRPC answer, not an HTTP
//! error page a gRPC client cannot read: a "Trailers-Only" response
//! (HTTP 200, `content-type: application/grpc`, `grpc-status` and a
//! percent-encoded `grpc-message`, no body), the status chosen by the
//! failure as gRPC's HTTP-to-gRPC mapping chooses it (`UNAVAILABLE` when
//! no instance appeared in time or none answered).

use super::forward::ProxyBody;
use crate::error::ProxyError;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// gRPC status codes the proxy answers with.
pub mod code {
    /// Unknown error.
    pub const UNKNOWN: u32 = 2;
    /// The call ran past its deadline.
    pub const DEADLINE_EXCEEDED: u32 = 4;
    /// The method is not served here.
    pub const UNIMPLEMENTED: u32 = 12;
    /// Internal error (a malformed call).
    pub const INTERNAL: u32 = 13;
    /// The service cannot be reached now; the client may retry.
    pub const UNAVAILABLE: u32 = 14;
    /// A resource limit was hit.
    pub const RESOURCE_EXHAUSTED: u32 = 8;
}

/// Whether a request is a gRPC call (`content-type: application/grpc`,
/// or `application/grpc+proto` and the like).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim_start();
            ct.len() >= 16
                && ct[..16].eq_ignore_ascii_case("application/grpc")
                && matches!(ct.as_bytes().get(16), None | Some(b'+' | b';'))
        })
}

/// The gRPC status for a failure the proxy answers itself.
pub fn status_of(e: &ProxyError) -> u32 {
    match e {
        ProxyError::NoInstance { .. }
        | ProxyError::QueueFull(_)
        | ProxyError::RegistryUnreachable { .. }
        | ProxyError::Upstream { .. } => code::UNAVAILABLE,
        ProxyError::UpstreamTimeout { .. } => code::DEADLINE_EXCEEDED,
        ProxyError::NoRoute { .. } => code::UNIMPLEMENTED,
        ProxyError::HeadTooLarge(_) => code::RESOURCE_EXHAUSTED,
        ProxyError::Client(_)
        | ProxyError::NotImplemented(_)
        | ProxyError::VersionNotSupported(_) => code::INTERNAL,
        ProxyError::Loop { .. } | ProxyError::SeenBefore(_) => code::UNKNOWN,
    }
}

/// `grpc-message`'s encoding: percent-encoding of everything outside
/// printable ASCII (controls and non-ASCII) and of `%` itself.
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, GRPC_MESSAGE).to_string()
}

/// The Trailers-Only answer for `e`.
pub fn failure(e: &ProxyError) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(status_of(e)));
    let message = percent_encode(e.to_string().trim_end());
    if let Ok(v) = HeaderValue::from_str(&message) {
        h.insert("grpc-message", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn grpc_calls_are_told_apart_and_get_their_status() {
        let ct = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            is_grpc(&h)
        };
        let kinds = [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC; charset=x", true),
            ("application/grpc-web", false),
            ("application/json", false),
            ("text/plain", false),
        ];
        for (v, want) in kinds {
            assert_eq!(ct(v), want, "{v}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
        let none = ProxyError::NoInstance {
            service: "greeter".into(),
            waited: Duration::from_secs(1),
        };
        let resp = failure(&none);
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["grpc-status"], "14");
        assert!(resp.headers()["grpc-message"]
            .to_str()
            .unwrap()
            .contains("greeter"));
        assert_eq!(
            percent_encode("50% \"ok\"\nnext é"),
            "50%25 \"ok\"%0Anext %C3%A9"
        );
    }
}
