//! HTTP/1.1, on two paths: `plain`, a hand-written fast path for plain
//! requests (a reusable buffer per connection, plain pooled upstream
//! sockets), and `full`, hyper, for everything else (upgrades, `Expect`,
//! chunked or large bodies, HTTP/1.0, absolute-form targets, anything
//! malformed or ambiguous). `dispatch` holds the rule that picks between
//! them. Both implement the same `crate::request` rules, and the same
//! HTTP/1 message rules: `version` (which request-line versions are served)
//! and `chunked` (the chunked framing grammar, for request and answer bodies).
//! HTTP/2 from clients is `h2` (requests under the full path's rules);
//! `tls` terminates TLS and picks HTTP/2 or HTTP/1.1 by ALPN.

pub mod chunked;
pub mod dispatch;
pub mod full;
#[cfg(test)]
mod fuzz;
pub mod h2;
pub mod plain;
pub mod rewind;
pub mod tls;
pub mod version;
