//! The listeners: UDP workers sharing one socket, a TCP accept loop with
//! one task per connection, and forwarding to recursors. Every packet is
//! answered from the current [`View`], brought up to date (once, by
//! whichever query sees it first; in time proportional to what changed)
//! when the catalog's index has moved.

use crate::answer::{Outcome, Responder, Scratch};
use crate::config::DnsConfig;
use crate::error::{Error, Result};
use crate::query_view::QueryView;
use crate::view::View;
use crate::wire::{self, Query, Rejection};
use arc_swap::{ArcSwap, Guard};
use shoal_catalog::acl::Authorizer;
use shoal_catalog::Registry;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Largest datagram read; anything longer is cut and then malformed.
const MAX_DATAGRAM: usize = 4096;
/// How long a TCP connection may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Concurrent TCP connections; more wait to be accepted.
const MAX_TCP_CONNECTIONS: usize = 512;
/// Concurrent forwarded UDP queries; more are answered SERVFAIL.
const MAX_FORWARDS: usize = 256;

/// The shared state of one DNS server.
pub(crate) struct Shared {
    registry: Arc<Registry>,
    config: DnsConfig,
    responder: Responder,
    view: ArcSwap<View>,
    /// Prepared queries, executed; rebuilt like `view`.
    queries: ArcSwap<QueryView>,
    /// Held while a new view is built, so only one query builds it.
    rebuilding: Mutex<()>,
    forwards: Semaphore,
    /// With ACLs on: the default token's rights, and the ACL index they
    /// were resolved at (resolved again when tokens or policies change).
    authz: ArcSwap<Option<(u64, Arc<Authorizer>)>>,
}

impl Shared {
    /// The view of the current snapshot; rebuilt (by one query, the others
    /// waiting for it) when what it depends on changed.
    fn view(&self) -> Guard<Arc<View>> {
        let view = self.view.load();
        let snapshot = self.registry.snapshot();
        let key = View::key(&snapshot);
        if !older(view.key, key) {
            return view;
        }
        drop(view);
        let _building = self.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
        // Another query may have built a view as new (or newer) meanwhile.
        let current = self.view.load_full();
        if older(current.key, key) {
            self.view
                .store(Arc::new(current.advance(&snapshot, &self.config)));
        }
        self.view.load()
    }

    /// The prepared queries of the current snapshot, rebuilt like `view`.
    fn queries(&self) -> Guard<Arc<QueryView>> {
        let queries = self.queries.load();
        let snapshot = self.registry.snapshot();
        let key = QueryView::key(&snapshot);
        if !older(queries.key, key) {
            return queries;
        }
        drop(queries);
        let _building = self.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
        if older(self.queries.load().key, key) {
            let built = QueryView::build(&snapshot, &self.config);
            self.queries.store(Arc::new(built));
        }
        self.queries.load()
    }

    /// What DNS answers may show (`None`: ACLs off). A default token that
    /// names no token (or expired) may read nothing.
    fn authorizer(&self) -> Option<Arc<Authorizer>> {
        let acl = self.config.acl.as_ref()?;
        let snapshot = self.registry.snapshot();
        let at = snapshot.acl_index();
        if let Some((index, authz)) = &**self.authz.load() {
            if *index == at {
                return Some(authz.clone());
            }
        }
        let secret = acl
            .token
            .as_deref()
            .unwrap_or(shoal_catalog::acl::ANONYMOUS_SECRET);
        let now = shoal_catalog::clock::now_unix();
        let authz = match snapshot.acl_authorizer(secret, acl.default_allow, now) {
            Some((_, a)) => a,
            None => {
                tracing::warn!(
                    "the DNS token names no ACL token: DNS answers nothing in the catalog"
                );
                Authorizer::new(&[], false)
            }
        };
        let authz = Arc::new(authz);
        self.authz.store(Arc::new(Some((at, authz.clone()))));
        Some(authz)
    }

    /// Answers one packet into `out`. `None`: send nothing; `Some(true)`:
    /// the query must be forwarded.
    fn handle(
        &self,
        packet: &[u8],
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
        tcp: bool,
    ) -> Option<bool> {
        let q = match Query::parse(packet) {
            Ok(q) => q,
            Err(Rejection::Drop) => return None,
            Err(Rejection::Reply { id, flags, rcode }) => {
                wire::write_rejection(out, id, flags, rcode);
                return Some(false);
            }
        };
        let limit = match (tcp, q.edns) {
            (true, _) => u16::MAX as usize,
            (false, Some(e)) => {
                (e.payload.min(wire::MAX_UDP_PAYLOAD) as usize).max(wire::CLASSIC_UDP_PAYLOAD)
            }
            (false, None) => wire::CLASSIC_UDP_PAYLOAD,
        };
        let (view, queries) = (self.view(), self.queries());
        let authz = self.authorizer();
        let outcome =
            self.responder
                .respond(&q, &view, &queries, authz.as_deref(), scratch, out, limit);
        Some(outcome == Outcome::Forward)
    }
}

/// Whether a view built at `view` misses changes seen at `now` (every
/// table index only grows).
fn older<const N: usize>(view: [u64; N], now: [u64; N]) -> bool {
    view.iter().zip(now).any(|(v, n)| *v < n)
}

/// Serves DNS on `udp` and `tcp` until `cancel` fires.
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    registry: Arc<Registry>,
    config: DnsConfig,
    cancel: CancellationToken,
) -> Result<()> {
    let config = config.validated()?;
    let shared = Arc::new(Shared {
        registry,
        responder: Responder::new(&config),
        config,
        view: ArcSwap::from_pointee(View::default()),
        authz: ArcSwap::from_pointee(None),
        queries: ArcSwap::from_pointee(QueryView::default()),
        rebuilding: Mutex::new(()),
        forwards: Semaphore::new(MAX_FORWARDS),
    });
    let udp = Arc::new(udp);
    let mut tasks = JoinSet::new();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
    for _ in 0..workers {
        tasks.spawn(udp_worker(udp.clone(), shared.clone(), cancel.clone()));
    }
    tasks.spawn(tcp_accept(tcp, shared, cancel.clone()));
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            cancel.cancel();
            result = Err(e);
        }
    }
    result
}

async fn udp_worker(
    socket: Arc<UdpSocket>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> Result<()> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::with_capacity(wire::MAX_UDP_PAYLOAD as usize);
    let mut scratch = Scratch::default();
    loop {
        let (len, peer) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            got = socket.recv_from(&mut buf) => match got {
                Ok(got) => got,
                // ICMP errors from earlier sends surface here; keep serving.
                Err(e) => {
                    tracing::debug!(error = %e, "DNS UDP receive failed");
                    continue;
                }
            },
        };
        match shared.handle(&buf[..len], &mut scratch, &mut out, false) {
            None => continue,
            Some(false) => {
                let _ = socket.send_to(&out, peer).await;
            }
            Some(true) => forward_udp(&shared, &socket, &buf[..len], peer),
        }
    }
}

/// Forwards a UDP query in its own task, so a slow recursor holds up no
/// worker; relays the answer only if it fits the client's limit.
fn forward_udp(shared: &Arc<Shared>, socket: &Arc<UdpSocket>, query: &[u8], peer: SocketAddr) {
    let Ok(permit) = shared.forwards.try_acquire() else {
        return;
    };
    permit.forget();
    let (shared, socket, query) = (shared.clone(), socket.clone(), query.to_vec());
    tokio::spawn(async move {
        let answer = crate::forward::udp(&shared.config, &query).await;
        shared.forwards.add_permits(1);
        let reply = match answer {
            Some(a) => a,
            None => crate::forward::servfail(&query),
        };
        let _ = socket.send_to(&reply, peer).await;
    });
}

async fn tcp_accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> Result<()> {
    let limit = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = limit.clone().acquire_owned() => p.map_err(|_| Error::Closed)?,
        };
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            got = listener.accept() => match got {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let (shared, cancel) = (shared.clone(), cancel.clone());
        conns.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tcp_connection(stream, &shared) => {}
            }
            drop(permit);
        });
        while conns.try_join_next().is_some() {}
    }
    conns.shutdown().await;
    Ok(())
}

/// Serves length-prefixed queries until the peer closes, idles, or sends
/// something that is not a DNS message.
async fn tcp_connection(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut scratch = Scratch::default();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut framed = Vec::new();
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let len = u16::from_be_bytes(len) as usize;
        if len < wire::HEADER_LEN {
            return Ok(());
        }
        buf.resize(len, 0);
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let reply = match shared.handle(&buf, &mut scratch, &mut out, true) {
            None => return Ok(()),
            Some(false) => &out[..],
            Some(true) => {
                out = match crate::forward::tcp(&shared.config, &buf).await {
                    Some(a) => a,
                    None => crate::forward::servfail(&buf),
                };
                &out[..]
            }
        };
        framed.clear();
        framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        framed.extend_from_slice(reply);
        stream.write_all(&framed).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::older;

    #[test]
    fn a_view_is_rebuilt_only_for_newer_changes() {
        for (view, now, want) in [
            ([1, 1, 1], [1, 1, 1], false),
            ([1, 2, 3], [1, 2, 4], true),
            ([5, 2, 3], [1, 2, 3], false),
            ([0, 0, 0], [1, 1, 1], true),
        ] {
            assert_eq!(older(view, now), want, "{view:?} vs {now:?}");
        }
    }
}
