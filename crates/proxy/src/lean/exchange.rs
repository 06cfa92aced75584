//! One request on the lean path: route, wait for an instance if there is
//! none yet, pick one, send, retry on another instance when that is safe,
//! relay the answer, and count everything — the rules of
//! `crate::forward`, on buffers instead of hyper messages.

use super::route::RouteCache;
use super::upstream::{self, Failure};
use super::{relay, Client, Deadline, Io};
use crate::balance::PickInput;
use crate::error::ProxyError;
use crate::forward::{attempt_failed, count_failure};
use crate::h1::request::{idempotent, RequestHead};
use crate::h1::rewrite::{self, Hop};
use crate::instance::{Instance, InstanceState};
use crate::table::Upstream;
use crate::Shared;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// A request at the start of the connection's buffer.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The buffer.
    pub buf: &'a [u8],
    /// Its head.
    pub head: &'a RequestHead,
}

/// Answers the request in `buf`; false when the client connection must
/// close afterwards.
pub async fn exchange(
    shared: &Shared,
    client: &Client,
    req: Request<'_>,
    route: &mut RouteCache,
    io: &mut Io,
    deadline: &mut Deadline<'_>,
) -> bool {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let started = shared.cfg.access_log.then(Instant::now);
    route.host(req.head.host.of(req.buf));
    let (status, keep) = match forward(shared, client, req, route, io, deadline).await {
        Ok(done) => done,
        Err(e) => {
            let status = e.status().as_u16();
            (status, answer_locally(shared, io, e, req.head.close).await)
        }
    };
    if let Some(started) = started {
        let method = String::from_utf8_lossy(req.head.method.of(req.buf));
        let (host, path) = (
            route.host(req.head.host.of(req.buf)),
            req.head.path(req.buf),
        );
        tracing::info!(target: "shoal::access", client = %client.peer, %method, %host, %path, status, ms = started.elapsed().as_millis() as u64, "request");
    }
    keep
}

/// The proxy's own answer for a failure; false when the connection closes.
async fn answer_locally(shared: &Shared, io: &mut Io, e: ProxyError, client_close: bool) -> bool {
    count_failure(shared, &e);
    let close = client_close || matches!(e, ProxyError::Client(_));
    rewrite::local_response(e.status(), &format!("{e}\n"), close, &mut io.out);
    io.stream.write_all(&io.out).await.is_ok() && !close
}

/// Routes and forwards; the answer's status and whether the client
/// connection stays open.
async fn forward(
    shared: &Shared,
    client: &Client,
    req: Request<'_>,
    route: &mut RouteCache,
    io: &mut Io,
    deadline: &mut Deadline<'_>,
) -> Result<(u16, bool), ProxyError> {
    let fixed = client.fixed.as_ref();
    let (upstream, strip) = route
        .upstream(shared, fixed, || req.head.path(req.buf))
        .await?;
    let hop = Hop {
        client: &client.ip,
        client_v6: client.v6,
        trusted: client.trusted,
        host: route.host(req.head.host.of(req.buf)),
        rfc7239: shared.cfg.forwarded,
        strip: strip.as_deref(),
    };
    rewrite::upstream_request(req.buf, req.head, &hop, &mut io.out);
    io.out
        .extend_from_slice(&req.buf[req.head.len..req.head.total()]);
    attempts(shared, client, req, &upstream, io, deadline).await
}

/// Counts a request as in flight on an instance until its answer is
/// relayed (the general path's `Outstanding`, without a reference count).
struct InFlight<'a>(&'a InstanceState);

impl<'a> InFlight<'a> {
    fn new(state: &'a InstanceState) -> Self {
        state.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Instances tried for one request: inline for the usual few attempts.
#[derive(Default)]
struct Tried {
    inline: [usize; 4],
    len: usize,
    more: Vec<usize>,
}

impl Tried {
    fn push(&mut self, i: usize) {
        if self.len < self.inline.len() {
            self.inline[self.len] = i;
        } else {
            if self.more.is_empty() {
                self.more.extend_from_slice(&self.inline);
            }
            self.more.push(i);
        }
        self.len += 1;
    }

    fn as_slice(&self) -> &[usize] {
        if self.more.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.more
        }
    }
}

/// Tries instances of `upstream` until one answers: another one after a
/// failed connect, and after an attempt without any answer byte when the
/// request is idempotent and bodiless; never after an answer started.
async fn attempts(
    shared: &Shared,
    client: &Client,
    req: Request<'_>,
    upstream: &Upstream,
    io: &mut Io,
    deadline: &mut Deadline<'_>,
) -> Result<(u16, bool), ProxyError> {
    let method = req.head.method.of(req.buf);
    let replayable = idempotent(method) && req.head.body_len == 0;
    let headers = req.head.raw(req.buf);
    let input = PickInput {
        client_ip: client.peer.ip(),
        headers: &headers,
    };
    let mut tried = Tried::default();
    let mut last = String::from("no instance could be tried");
    for _ in 0..=shared.cfg.retries {
        let Some(i) = upstream.pick(&input, tried.as_slice()) else {
            break;
        };
        let inst = &upstream.instances[i];
        if let Some(&prev) = tried.as_slice().last() {
            let prev: &Instance = &upstream.instances[prev];
            prev.state.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        tried.push(i);
        let failure = match attempt(shared, req, upstream, inst, io, deadline).await? {
            Ok(done) => return Ok(done),
            Err(failure) => failure,
        };
        attempt_failed(shared, upstream, inst);
        let (Failure::NoAnswer(e) | Failure::BadAnswer(e) | Failure::NoConnection(e)) = &failure;
        last = format!("instance {} ({}): {e}", inst.id, inst.addr);
        match failure {
            Failure::NoConnection(_) => continue,
            Failure::NoAnswer(_) if replayable => continue,
            _ => break,
        }
    }
    Err(ProxyError::Upstream {
        service: upstream.service.clone(),
        reason: last,
    })
}

/// One attempt on `inst`: the answer relayed (its status, and whether the
/// client connection stays open), or why there was none; Err when the
/// upstream did not answer in time.
async fn attempt(
    shared: &Shared,
    req: Request<'_>,
    upstream: &Upstream,
    inst: &Instance,
    io: &mut Io,
    deadline: &mut Deadline<'_>,
) -> Result<Result<(u16, bool), Failure>, ProxyError> {
    let mut stream = match upstream::connect(shared, inst).await {
        Ok(s) => s,
        Err(e) => return Ok(Err(Failure::NoConnection(e))),
    };
    inst.state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let guard = InFlight::new(&inst.state);
    let sent = Instant::now();
    deadline.set(tokio::time::Instant::from_std(sent) + shared.cfg.request_timeout);
    let head_request = req.head.method.of(req.buf) == b"HEAD";
    let answered = tokio::select! {
        biased;
        r = upstream::round_trip(&mut stream, io, head_request) => r,
        _ = deadline.passed() => {
            attempt_failed(shared, upstream, inst);
            return Err(ProxyError::UpstreamTimeout(upstream.service.clone()));
        }
    };
    if let Err(failure) = answered {
        return Ok(Err(failure));
    }
    let status = io.resp.status;
    inst.state.stats.record(status, sent.elapsed());
    if status >= 500 {
        upstream.record_failure(inst, &shared.cfg.eject);
    } else {
        inst.state.record_success();
    }
    let max_idle = shared.cfg.max_idle_per_instance;
    let keep = relay::relay(stream, io, req.head.close, inst, max_idle).await;
    drop(guard);
    Ok(Ok((status, keep)))
}
