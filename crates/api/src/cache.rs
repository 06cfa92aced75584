//! Answers shared between identical reads of one snapshot. When a write
//! wakes a thousand watchers of the same service, they all read the same
//! snapshot and ask the same question: the JSON is rendered once and the
//! bytes shared, instead of a thousand times.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// Keys kept at most; past it the cache starts over (it refills in one
/// round of reads, and a stale entry is never served: see `body`).
const MAX_ENTRIES: usize = 4096;

struct Cached {
    snapshot: u64,
    body: Bytes,
    /// ACLs left something out of it (`X-Consul-Results-Filtered-By-ACLs`).
    filtered: bool,
}

/// Rendered bodies by request key, each valid for one snapshot index.
#[derive(Default)]
pub struct ResponseCache {
    entries: Mutex<HashMap<String, Cached>>,
}

impl ResponseCache {
    /// The body for `key` read at `snapshot`: the cached one if it was
    /// rendered from that same snapshot, else `render()`'s (then cached).
    pub fn body<E>(
        &self,
        key: &str,
        snapshot: u64,
        render: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Bytes, E> {
        let (body, _) = self.body_filtered(key, snapshot, || Ok((render()?, false)))?;
        Ok(body)
    }

    /// Like [`ResponseCache::body`], for a render that also says whether
    /// ACLs left something out (kept with the body).
    pub fn body_filtered<E>(
        &self,
        key: &str,
        snapshot: u64,
        render: impl FnOnce() -> Result<(Vec<u8>, bool), E>,
    ) -> Result<(Bytes, bool), E> {
        {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = entries.get(key).filter(|c| c.snapshot == snapshot) {
                return Ok((c.body.clone(), c.filtered));
            }
        }
        let (body, filtered) = render()?;
        let body = Bytes::from(body);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(key) {
            entries.clear();
        }
        let newer = entries.get(key).is_some_and(|c| c.snapshot > snapshot);
        if !newer {
            entries.insert(
                key.to_string(),
                Cached {
                    snapshot,
                    body: body.clone(),
                    filtered,
                },
            );
        }
        Ok((body, filtered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_once_per_snapshot() {
        let cache = ResponseCache::default();
        let renders = std::cell::Cell::new(0);
        let get = |snapshot, text: &'static str| {
            cache
                .body::<()>("/v1/x", snapshot, || {
                    renders.set(renders.get() + 1);
                    Ok(text.as_bytes().to_vec())
                })
                .unwrap()
        };
        for _ in 0..3 {
            assert_eq!(get(5, "five"), "five");
        }
        assert_eq!(get(6, "six"), "six");
        // An older snapshot never replaces a newer entry, and gets its own body.
        assert_eq!(get(5, "old"), "old");
        assert_eq!(get(6, "nope"), "six");
        assert_eq!(renders.get(), 3);
    }
}
