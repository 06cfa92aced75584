//! Session renewals seen by every server on one etcd catalog.
//!
//! A renewal (`PUT /v1/session/renew/:id`) changes nothing in the catalog,
//! so it is no catalog write: it only pushes back a timer (see
//! `shoal_catalog::SessionTimers`). Only the leader acts on those timers,
//! so a renewal received by any other server must reach it. Each server
//! gathers the IDs it renewed for [`FLUSH`] and writes them, newline
//! separated, to `PREFIX/renewals/NODE` (one etcd put per flush, however
//! many renewals; chunks of at most [`CHUNK`] IDs stay far below etcd's
//! request size limit); every server watches `PREFIX/renewals/` and
//! restarts its timers of the IDs other servers renewed.
//!
//! A renewal thus reaches the leader up to `FLUSH` plus one etcd round
//! trip late: the session expires that much later than a timer on the
//! renewing server would say, never earlier. A renewal that could not be
//! written (etcd unreachable) is tried again at the next flush.

use super::client::{enc, prefix_end, EtcdClient};
use serde_json::json;
use shoal_catalog::Registry;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long renewals are gathered before one write passes them on.
pub const FLUSH: Duration = Duration::from_millis(200);
/// Most session IDs in one write (36-byte UUIDs: about 300 KiB).
const CHUNK: usize = 8192;
/// How often a server drops timers of sessions that are gone.
const SWEEP: Duration = Duration::from_secs(30);

/// Starts passing this server's renewals on and applying the others'.
pub fn share(
    client: Arc<EtcdClient>,
    prefix: &str,
    node: &str,
    registry: &Arc<Registry>,
    cancel: CancellationToken,
) {
    let dir = format!("{prefix}renewals/").into_bytes();
    let own = [dir.clone(), node.as_bytes().to_vec()].concat();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    registry.session_timers().forward_to(Box::new(move |id| {
        let _ = tx.send(id.to_string());
    }));
    tokio::spawn(write_renewals(
        client.clone(),
        own.clone(),
        rx,
        cancel.clone(),
    ));
    tokio::spawn(apply_renewals(client, dir, own, registry.clone(), cancel));
}

async fn write_renewals(
    client: Arc<EtcdClient>,
    key: Vec<u8>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    cancel: CancellationToken,
) {
    let mut pending: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            id = rx.recv() => match id {
                Some(id) => { pending.insert(id); continue; }
                None => return,
            },
            _ = tick.tick() => {}
        }
        if pending.is_empty() {
            continue;
        }
        let ids: Vec<String> = pending.iter().cloned().collect();
        for chunk in ids.chunks(CHUNK) {
            let value = chunk.join("\n");
            let put = json!({"key": enc(&key), "value": enc(value.as_bytes())});
            match client.call("/v3/kv/put", &put, false).await {
                Ok(_) => {
                    for id in chunk {
                        pending.remove(id);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, waiting = pending.len(), "cannot pass session renewals on to the other servers");
                    break;
                }
            }
        }
    }
}

async fn apply_renewals(
    client: Arc<EtcdClient>,
    dir: Vec<u8>,
    own: Vec<u8>,
    registry: Arc<Registry>,
    cancel: CancellationToken,
) {
    let end = prefix_end(&dir);
    let mut sweep = tokio::time::interval(SWEEP);
    loop {
        // Renewals before this moment do not matter: a server that starts
        // leading gives every session a full TTL.
        let from = match client.range(&dir, None).await {
            Ok(r) => r.header.revision + 1,
            Err(_) => {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        let Ok(mut stream) = client.watch(&dir, &end, from).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = sweep.tick() => {
                    registry.session_timers().forget_gone(&registry);
                    continue;
                }
                n = stream.next() => n,
            };
            let Ok(result) = next else { break };
            if result.canceled {
                break;
            }
            let snapshot = registry.snapshot();
            let timers = registry.session_timers();
            for ev in result.events {
                if ev.is_delete() || ev.kv.key == own {
                    continue;
                }
                let ids = String::from_utf8_lossy(&ev.kv.value);
                for id in ids.split('\n') {
                    if let Some(ttl) = snapshot.session(id).and_then(|s| s.ttl()) {
                        timers.renewal_seen(id, ttl);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
