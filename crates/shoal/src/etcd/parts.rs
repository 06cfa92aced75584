//! Commits too large for one etcd transaction (a snapshot restore of a big
//! catalog, or a Consul txn whose records pass etcd's 128 operations),
//! written in parts that each fit etcd's default limits (`--max-txn-ops`
//! 128, `--max-request-bytes` 1.5 MiB).
//!
//! - Every part is a transaction guarded like any commit (the mod revision
//!   of `m/index`, which every part writes again), the first one on the
//!   view the batch was computed from. Each part but the last also writes
//!   `m/parts` (`{"part":i,"of":n}`); the last one deletes it.
//! - Followers hold the parts back and hand the registry the whole commit
//!   at the last part's revision ([`Partial`]): readers on every server
//!   see the catalog as it was until the last part is in, then all of it
//!   at once. The server that writes shows the new catalog once `commit`
//!   returns, as for any commit.
//! - While `m/parts` exists every other commit is refused at once with a
//!   clear error (its guard fails, and catching up would not help), so no
//!   write lands between two parts.
//! - A batch that deletes [`KEY_REPLACES_ALL`] (a restore) also deletes
//!   every key that etcd holds under the prefix and the batch does not
//!   write, read from etcd itself, not from the view: what a restore
//!   interrupted half way wrote goes too when a restore is run again.
//! - If a part fails, the commit fails with an error saying so. etcd then
//!   holds a half-written commit: every running server keeps serving the
//!   catalog as it was before (its view never took the parts), other
//!   writes are refused, and a server that starts refuses to load it.
//!   Running the restore again (the only commit allowed over `m/parts`)
//!   replaces it in full.

use super::client::{enc, prefix_end, EtcdClient, RangeResponse};
use super::store::{commit_failed, storage, PARTS_RECORD};
use serde_json::{json, Value};
use shoal_catalog::{Error, Followed, Guarded, Mutation, Result, KEY_REPLACES_ALL};
use std::collections::HashSet;

/// Most operations in one transaction (etcd's default `--max-txn-ops`).
pub const MAX_OPS: usize = 128;
/// Most record bytes (keys and values, before base64) in one part: with
/// base64 and JSON around them, well below etcd's 1.5 MiB request limit.
pub const MAX_BYTES: usize = 900 * 1024;
/// Operations of a part besides its records: `m/index` and `m/parts`.
const OWN_OPS: usize = 2;
const INDEX_RECORD: &str = "m/index";

fn size(m: &Mutation) -> usize {
    m.key.len() + m.value.as_ref().map_or(0, Vec::len) + 64
}

/// Whether `mutations` need more than one transaction.
pub fn too_large(mutations: &[Mutation]) -> bool {
    mutations.len() > MAX_OPS - OWN_OPS
        || mutations.iter().map(size).sum::<usize>() > MAX_BYTES
        || mutations.iter().any(|m| m.key == KEY_REPLACES_ALL)
}

/// The error of a load that finds a commit half written.
pub fn half_written(marker: &[u8]) -> Error {
    Error::Storage(format!(
        "the catalog in etcd is half written: a commit in parts (a snapshot restore) stopped \
         after part {} and was not run again to the end; restore the snapshot again through \
         a running server (`shoal snapshot restore FILE`), or, if none runs, delete the \
         prefix's db/ keys with etcdctl and restore onto an empty catalog",
        String::from_utf8_lossy(marker)
    ))
}

/// The error of a commit refused because a commit in parts is under way.
pub fn in_the_way(marker_b64: &str) -> Error {
    use base64::Engine;
    let marker = base64::engine::general_purpose::STANDARD
        .decode(marker_b64)
        .unwrap_or_default();
    Error::Storage(format!(
        "No cluster leader: a snapshot restore is being written to etcd ({}); writes are \
         taken again once it is done (if it failed, run it again)",
        String::from_utf8_lossy(&marker)
    ))
}

fn op(key: Vec<u8>, value: Option<&[u8]>) -> Value {
    match value {
        Some(v) => json!({"request_put": {"key": enc(&key), "value": enc(v)}}),
        None => json!({"request_delete_range": {"key": enc(&key)}}),
    }
}

/// Writes `mutations` in parts (see the module doc).
pub async fn commit(
    client: &EtcdClient,
    records: &[u8],
    base: u64,
    mutations: &[Mutation],
) -> Result<Guarded> {
    let key = |r: &str| [records, r.as_bytes()].concat();
    let Some(index) = mutations.iter().find(|m| m.key == INDEX_RECORD) else {
        return Err(Error::Storage(
            "internal: a commit must write the index record".into(),
        ));
    };
    let replaces_all = mutations.iter().any(|m| m.key == KEY_REPLACES_ALL);
    // What etcd holds now (keys only): the guard of the first part, and
    // for a restore the keys to delete.
    let body =
        json!({"key": enc(records), "range_end": enc(&prefix_end(records)), "keys_only": true});
    let now: RangeResponse = serde_json::from_value(
        client
            .call("/v3/kv/range", &body, true)
            .await
            .map_err(storage)?,
    )
    .map_err(|e| Error::Storage(format!("etcd range: {e}")))?;
    let mod_of = |r: &str| {
        now.kvs
            .iter()
            .find(|kv| kv.key == key(r))
            .map(|kv| kv.mod_revision)
    };
    let head = mod_of(INDEX_RECORD).unwrap_or(0);
    let first_guard = match mod_of(PARTS_RECORD) {
        // Only a restore may replace a half-written commit.
        Some(_) if !replaces_all => {
            return Err(in_the_way(&enc(b"parts of another commit")));
        }
        Some(rev) => (PARTS_RECORD, rev),
        None if head != base => return Ok(Guarded::Behind(head)),
        None => (INDEX_RECORD, base),
    };
    let mut ops: Vec<(Vec<u8>, Option<&[u8]>)> = Vec::new();
    let mut written: HashSet<&str> = HashSet::new();
    let mut sizes = Vec::new();
    for m in mutations {
        if m.key == INDEX_RECORD || m.key == KEY_REPLACES_ALL {
            continue;
        }
        if replaces_all && m.value.is_none() {
            continue; // deleted below if etcd has it
        }
        written.insert(&m.key);
        ops.push((key(&m.key), m.value.as_deref()));
        sizes.push(size(m));
    }
    if replaces_all {
        for kv in &now.kvs {
            let Some(r) = kv
                .key
                .strip_prefix(records)
                .and_then(|k| std::str::from_utf8(k).ok())
            else {
                continue;
            };
            if r != INDEX_RECORD && r != PARTS_RECORD && !written.contains(r) {
                ops.push((kv.key.clone(), None));
                sizes.push(kv.key.len() + 64);
            }
        }
    }
    let parts = split(&sizes);
    let n = parts.len();
    let (mut guard_key, mut guard_rev) = (key(first_guard.0), first_guard.1);
    let mut revision = 0;
    for (i, range) in parts.into_iter().enumerate() {
        let mut success: Vec<Value> = ops[range].iter().map(|(k, v)| op(k.clone(), *v)).collect();
        success.push(op(key(INDEX_RECORD), index.value.as_deref()));
        if i + 1 < n {
            let marker = format!("{{\"part\":{},\"of\":{n}}}", i + 1);
            success.push(op(key(PARTS_RECORD), Some(marker.as_bytes())));
        } else {
            success.push(op(key(PARTS_RECORD), None));
        }
        let body = json!({
            "compare": [{"target": "MOD", "result": "EQUAL", "key": enc(&guard_key),
                         "mod_revision": guard_rev.to_string()}],
            "success": success,
            "failure": [{"request_range": {"key": enc(&key(INDEX_RECORD))}}],
        });
        let outcome = client.txn(&body).await.map_err(commit_failed);
        match outcome {
            Ok((true, rev, _)) => revision = rev,
            Ok((false, rev, raw)) if i == 0 => {
                let head = raw["responses"][0]["response_range"]["kvs"][0]["mod_revision"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(rev);
                return Ok(Guarded::Behind(head));
            }
            Ok((false, ..)) => {
                return Err(stopped(
                    i,
                    n,
                    "another commit changed the catalog between parts",
                ))
            }
            Err(e) if i == 0 => return Err(e),
            Err(e) => return Err(stopped(i, n, &e.to_string())),
        }
        (guard_key, guard_rev) = (key(INDEX_RECORD), revision);
    }
    tracing::info!(
        parts = n,
        operations = ops.len(),
        "large commit written to etcd in parts"
    );
    Ok(Guarded::Committed(revision))
}

fn stopped(done: usize, of: usize, why: &str) -> Error {
    Error::Storage(format!(
        "the commit (a snapshot restore) was written to etcd in {of} parts and stopped after \
         {done}: {why}. Every server still shows the catalog as it was before it and refuses \
         other writes until the restore is run again to the end"
    ))
}

/// Consecutive ranges of operations, each within [`MAX_OPS`] (with a
/// part's own two) and [`MAX_BYTES`]; at least one (maybe empty) part.
fn split(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, s) in sizes.iter().enumerate() {
        if i > start && (i - start >= MAX_OPS - OWN_OPS || bytes + s > MAX_BYTES) {
            parts.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += s;
    }
    parts.push(start..sizes.len());
    parts
}

/// A follower's parts of a commit written in parts, held back until the
/// last one.
#[derive(Default)]
pub struct Partial {
    held: Vec<Mutation>,
    holding: bool,
}

impl Partial {
    /// Whether parts are held, waiting for the last one.
    pub fn holding(&self) -> bool {
        self.holding
    }

    /// The whole commits among `commits`: a part is kept until the last
    /// one (which deletes `m/parts`), then handed over with all earlier
    /// parts' mutations, at its revision. `m/parts` itself is no record
    /// of the catalog and is left out.
    pub fn take_whole(&mut self, commits: Vec<Followed>) -> Vec<Followed> {
        let mut out = Vec::new();
        for c in commits {
            let marker = c.mutations.iter().find(|m| m.key == PARTS_RECORD);
            let more = marker.is_some_and(|m| m.value.is_some());
            let last = marker.is_some_and(|m| m.value.is_none());
            let records = c.mutations.into_iter().filter(|m| m.key != PARTS_RECORD);
            if more {
                self.holding = true;
                self.held.extend(records);
            } else if self.holding || last {
                self.held.extend(records);
                self.holding = false;
                out.push(Followed {
                    position: c.position,
                    mutations: std::mem::take(&mut self.held),
                });
            } else {
                out.push(Followed {
                    position: c.position,
                    mutations: records.collect(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(key: &str, value: Option<&str>) -> Mutation {
        Mutation {
            key: key.into(),
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn parts_stay_within_etcds_default_limits() {
        // (record sizes, expected part lengths)
        let big = MAX_BYTES / 2 - 1;
        let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
            (vec![], vec![0]),
            (vec![10; 126], vec![126]),
            (vec![10; 127], vec![126, 1]),
            (vec![10; 300], vec![126, 126, 48]),
            (vec![big, big, big, big], vec![2, 2]),
            (vec![MAX_BYTES * 2, 10], vec![1, 1]),
        ];
        for (sizes, want) in cases {
            let got: Vec<usize> = split(&sizes).into_iter().map(|r| r.len()).collect();
            assert_eq!(got, want, "{} records", sizes.len());
        }
    }

    #[test]
    fn followers_hand_over_a_commit_in_parts_whole_at_its_last_revision() {
        let marker = |i: u32| m(PARTS_RECORD, Some(&format!("{{\"part\":{i},\"of\":3}}")));
        let commits = vec![
            Followed {
                position: 5,
                mutations: vec![m("k/before", Some("x"))],
            },
            Followed {
                position: 6,
                mutations: vec![m("k/a", Some("1")), marker(1)],
            },
            Followed {
                position: 7,
                mutations: vec![m("k/b", Some("2")), marker(2)],
            },
        ];
        let mut p = Partial::default();
        let out = p.take_whole(commits);
        assert_eq!(out.len(), 1, "parts are held back");
        assert_eq!(out[0].position, 5);
        let rest = vec![
            Followed {
                position: 8,
                mutations: vec![m("k/c", None), m(PARTS_RECORD, None)],
            },
            Followed {
                position: 9,
                mutations: vec![m("k/after", Some("y"))],
            },
        ];
        let out = p.take_whole(rest);
        let keys: Vec<Vec<&str>> = out
            .iter()
            .map(|c| c.mutations.iter().map(|m| m.key.as_str()).collect())
            .collect();
        assert_eq!(keys, vec![vec!["k/a", "k/b", "k/c"], vec!["k/after"]]);
        assert_eq!((out[0].position, out[1].position), (8, 9));
    }
}
