//! What every handler needs from a request: its query parameters (with
//! Consul's flag-style `?recurse`), the blocking-query options, the
//! datacenter check, and a JSON body read under a size limit and decoded
//! the forgiving way Consul's decoder does (field names in any case, snake
//! case accepted).

use crate::error::{ApiError, ApiResult};
use crate::ApiState;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;
use serde_json::Value;
use shoal_catalog::duration;
use shoal_catalog::QueryOptions;

/// Decoded query-string parameters, in order.
#[derive(Clone, Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a raw query string; `+` is a space as in forms.
    pub fn parse(raw: Option<&str>) -> Self {
        let decode = |s: &str| {
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        Params(
            raw.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(pair), String::new()),
                })
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key` (for repeated `?tag=`).
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether `key` is present, with or without a value (`?recurse`).
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, v)| k == key && v != "false")
    }

    /// An unsigned integer parameter; `what` names it in the error.
    pub fn u64(&self, key: &str, what: &str) -> ApiResult<Option<u64>> {
        self.get(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("Invalid {what}: {v:?}")))
            })
            .transpose()
    }

    /// `?index=` and `?wait=`.
    pub fn query_options(&self) -> ApiResult<QueryOptions> {
        let index = self.u64("index", "index")?.unwrap_or(0);
        let wait = match self.get("wait") {
            None | Some("") => None,
            Some(w) => Some(
                parse_wait(w)
                    .map_err(|_| ApiError::bad_request(format!("Invalid wait time: {w:?}")))?,
            ),
        };
        Ok(QueryOptions { index, wait })
    }
}

/// Consul's `?wait=`: a Go duration, or a bare number of seconds.
fn parse_wait(w: &str) -> Result<std::time::Duration, String> {
    if let Ok(secs) = w.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    duration::parse(w)
}

/// The parsed, validated request context every read handler starts from.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// Query parameters.
    pub params: Params,
    /// Blocking-query options.
    pub q: QueryOptions,
    /// `?pretty`: indent the JSON.
    pub pretty: bool,
    /// Path and query without the blocking parameters: requests with the
    /// same key read at the same snapshot get the same answer. With ACLs
    /// on it ends with the token's AccessorID: answers are filtered.
    pub cache_key: String,
    /// What the request's token may do.
    pub acl: std::sync::Arc<crate::acl::Access>,
}

/// The request's path and query, less `index`, `wait` and `hash`.
fn cache_key(uri: &axum::http::Uri) -> String {
    let mut key = uri.path().to_string();
    for (i, pair) in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| {
            let name = p.split('=').next().unwrap_or("");
            !p.is_empty() && !matches!(name, "index" | "wait" | "hash")
        })
        .enumerate()
    {
        key.push(if i == 0 { '?' } else { '&' });
        key.push_str(pair);
    }
    key
}

impl FromRequestParts<ApiState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let params = Params::parse(parts.uri.query());
        if let Some(dc) = params.get("dc") {
            if !dc.is_empty() && dc != state.config.datacenter {
                // Consul's answer for a datacenter it has no route to.
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "No path to datacenter",
                ));
            }
        }
        let q = params.query_options()?;
        let pretty = params.has("pretty");
        let acl = state.access(parts).await?;
        let mut cache_key = cache_key(&parts.uri);
        if acl.enforced {
            cache_key.push_str("\0acl=");
            cache_key.push_str(&acl.accessor);
        }
        Ok(Ctx {
            params,
            q,
            pretty,
            cache_key,
            acl,
        })
    }
}

/// Largest JSON body accepted by the registration endpoints.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// Reads a body of at most `limit` bytes; more is a 413.
pub async fn read_body(
    body: Body,
    limit: usize,
    too_large: impl FnOnce(usize) -> String,
) -> ApiResult<Bytes> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            too_large(limit),
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "Failed to read request body: {e}"
        ))),
    }
}

/// Reads and decodes a JSON body.
pub async fn json_body<T: DeserializeOwned>(body: Body) -> ApiResult<T> {
    let bytes = read_body(body, MAX_JSON_BODY, |max| {
        format!("Request body too large, max size: {max} bytes")
    })
    .await?;
    decode_json(&bytes)
}

/// Object keys whose values are user maps: their keys are kept as sent.
const USER_MAPS: &[&str] = &[
    "meta",
    "nodemeta",
    "servicemeta",
    "header",
    "taggedaddresses",
];

/// Decodes JSON with Consul's leniency: keys match case-insensitively and
/// snake_case works (`enable_tag_override`), because keys are normalized
/// to lowercase without underscores before decoding into input types.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("Request decode failed: EOF"));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?;
    serde_json::from_value(normalize_keys(value))
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))
}

/// The normalized form of a key.
pub fn norm(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn normalize_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let k = norm(&k);
                    let v = if USER_MAPS.contains(&k.as_str()) {
                        v
                    } else {
                        normalize_keys(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_flags_and_values() {
        let p = Params::parse(Some("recurse&tag=a&tag=b%20c&index=5&keys=false&x=1+2"));
        assert!(p.has("recurse"));
        assert!(!p.has("keys"));
        assert_eq!(p.all("tag"), vec!["a", "b c"]);
        assert_eq!(p.u64("index", "index").unwrap(), Some(5));
        assert_eq!(p.get("x"), Some("1 2"));
    }

    #[test]
    fn wait_and_index_errors() {
        let cases = [
            ("index=abc", "Invalid index"),
            ("wait=forever", "Invalid wait time"),
            ("index=-1", "Invalid index"),
        ];
        for (q, want) in cases {
            let err = Params::parse(Some(q)).query_options().unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(err.message.contains(want), "{q}: {}", err.message);
        }
        let q = Params::parse(Some("index=3&wait=10s"))
            .query_options()
            .unwrap();
        assert_eq!(
            (q.index, q.wait),
            (3, Some(std::time::Duration::from_secs(10)))
        );
    }

    #[test]
    fn cache_keys_ignore_blocking_parameters() {
        let cases = [
            (
                "/v1/health/service/web?index=5&wait=10s&passing",
                "/v1/health/service/web?passing",
            ),
            (
                "/v1/health/service/web?passing&index=7",
                "/v1/health/service/web?passing",
            ),
            ("/v1/kv/a?recurse&pretty", "/v1/kv/a?recurse&pretty"),
            ("/v1/kv/a?index=1", "/v1/kv/a"),
        ];
        for (uri, want) in cases {
            assert_eq!(cache_key(&uri.parse().unwrap()), want);
        }
    }

    #[test]
    fn keys_normalize_but_user_maps_keep_theirs() {
        let v = normalize_keys(
            serde_json::json!({"Enable_Tag_Override": true, "Meta": {"Version_X": "1"}, "Checks": [{"CheckID": "a"}]}),
        );
        assert_eq!(
            v,
            serde_json::json!({"enabletagoverride": true, "meta": {"Version_X": "1"}, "checks": [{"checkid": "a"}]})
        );
    }
}
