//! The dashboard: one page at `/ui/`, its script and style embedded in the
//! binary (no CDN, nothing fetched at run time but the API itself). The
//! page follows the catalog through the change stream (or blocking
//! queries), the proxy's counters through `/v1/proxy/stats`, and changes
//! the catalog only through the ordinary HTTP API. See `docs/ui.md`.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// Total bytes of the embedded page, script and style.
pub const UI_BYTES: usize = INDEX.len() + SCRIPT.len() + STYLE.len();

/// One embedded asset, with a validator so a reload costs a 304.
fn asset(content_type: &'static str, body: &'static str, req: &HeaderMap) -> Response {
    // The build's version and the asset's length: changes with every
    // release that changes the asset (an exact hash would need a build
    // script for no practical gain).
    let etag = format!("\"{}-{}\"", env!("CARGO_PKG_VERSION"), body.len());
    let matches = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::ETAG,
            HeaderValue::from_str(&etag).expect("ASCII etag"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if matches {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, body).into_response()
}

/// The page's own policy: nothing but this origin, no inline script, no
/// framing by other sites.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

async fn index(req: HeaderMap) -> Response {
    let mut r = asset("text/html; charset=utf-8", INDEX, &req);
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r.headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// `/ui/`, `/ui` (redirected) and the page's assets.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/index.html", get(index))
        .route(
            "/ui/app.js",
            get(|h: HeaderMap| async move { asset("text/javascript; charset=utf-8", SCRIPT, &h) }),
        )
        .route(
            "/ui/app.css",
            get(|h: HeaderMap| async move { asset("text/css; charset=utf-8", STYLE, &h) }),
        )
}

/// `/` sends a browser to the dashboard (`shoal dev`, where the newcomer
/// opens http://127.0.0.1:8500/).
pub fn root_redirect<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(|| async { Redirect::temporary("/ui/") }))
}
