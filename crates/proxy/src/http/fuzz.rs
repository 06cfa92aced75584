//! Property tests of the parsers of untrusted bytes on both HTTP paths:
//! the plain path's request head, chunked body and answer head parsers,
//! and the full path's framing watch. Bounded by `PROPTEST_CASES`
//! (default 256); `bench/fuzz-proxy.sh` runs them longer.

use super::chunked::Chunked;
use super::full::framing::FramingWatch;
use super::plain::request::RequestHead;
use super::plain::response::ResponseHead;
use crate::http::dispatch::Parsed;
use proptest::prelude::*;

/// Bytes that look like HTTP often enough to reach deep states.
fn http_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"GET / HTTP/1.1\r\n".to_vec()),
        Just(b"POST /x HTTP/1.0\r\n".to_vec()),
        Just(b"Host: a\r\n".to_vec()),
        Just(b"Content-Length: 5\r\n".to_vec()),
        Just(b"Content-Length: 99999999999999999999\r\n".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"Connection: content-length, host\r\n".to_vec()),
        Just(b"Via: 1.1 shoal-x\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"5\r\nhello\r\n".to_vec()),
        Just(b"0\r\n\r\n".to_vec()),
        Just(b"ffffffffffffffffff\r\n".to_vec()),
        Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
        Just(b"GET / HTTP/2.0\r\n".to_vec()),
        Just(b"GET /\r\n".to_vec()),
        Just(b"zz\r\n".to_vec()),
        Just(b"5\nhello\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..24),
    ];
    proptest::collection::vec(piece, 0..16).prop_map(|p| p.concat())
}

/// Splits `bytes` at the given cut points (modulo its length).
fn pieces(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for c in at.into_iter().chain(std::iter::once(bytes.len())) {
        out.push(bytes[last..c].to_vec());
        last = c;
    }
    out
}

/// Chunked framing as a sender writes it.
fn encode_chunked(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        out.extend_from_slice(format!("{:x};e=1\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nX-T: 1\r\n\r\n");
    out
}

proptest! {
    #[test]
    fn fuzz_request_head_parser(bytes in http_like(), max in 16usize..4096) {
        let mut head = RequestHead::default();
        if head.parse(&bytes, max) == Parsed::Plain {
            prop_assert!(head.len <= bytes.len() && head.len <= max);
            prop_assert!(head.body_len <= crate::http::plain::request::MAX_BUFFERED_BODY);
            prop_assert!(!head.host.of(&bytes).is_empty() || head.host.start == head.host.end);
            prop_assert!(head.target.of(&bytes).starts_with(b"/"));
            for (n, v) in &head.headers {
                prop_assert!(n.end <= head.len && v.end <= head.len);
            }
        }
    }

    #[test]
    fn fuzz_chunked_decoder_is_split_independent(bytes in http_like(), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let whole = {
            let mut c = Chunked::default();
            c.advance(&bytes).map(|used| (used, c.is_done()))
        };
        let mut c = Chunked::default();
        let mut used = 0;
        let mut split = Ok((0, false));
        for part in pieces(&bytes, &cuts) {
            match c.advance(&part) {
                Ok(n) => {
                    prop_assert!(n <= part.len());
                    used += n;
                    split = Ok((used, c.is_done()));
                    if c.is_done() { break; }
                }
                Err(e) => { split = Err(e); break; }
            }
        }
        prop_assert_eq!(whole.map_err(|e| e.0), split.map_err(|e| e.0));
    }

    #[test]
    fn fuzz_chunked_round_trip(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..6), tail in proptest::collection::vec(any::<u8>(), 0..20)) {
        let body = encode_chunked(&chunks);
        let mut stream = body.clone();
        stream.extend_from_slice(&tail);
        let mut c = Chunked::default();
        prop_assert_eq!(c.advance(&stream).map_err(|e| e.0), Ok(body.len()));
        prop_assert!(c.is_done());
    }

    #[test]
    fn fuzz_response_head_parser(bytes in http_like(), head_request in any::<bool>()) {
        let mut resp = ResponseHead::default();
        if let Ok(true) = resp.parse(&bytes, head_request) {
            prop_assert!(resp.len <= bytes.len());
            prop_assert!((100..1000).contains(&resp.status));
        }
    }

    #[test]
    fn fuzz_framing_watch_is_split_independent(bytes in http_like(), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let flagged = |parts: Vec<Vec<u8>>| {
            let mut w = FramingWatch::new(8192, 1);
            let mut out = Vec::new();
            for p in parts { w.feed(&p, &mut out); }
            (out, w.refusal().cloned())
        };
        prop_assert_eq!(flagged(vec![bytes.clone()]), flagged(pieces(&bytes, &cuts)));
    }
}
