//! One request on the plain path: checked and routed by the request rules
//! (`crate::request`), its head rewritten into the connection's buffer,
//! then sent by the one retry loop through this path's [`Exchange`]:
//! a pooled socket, the head and small body written, the answer's head
//! read (within the answer timeout) and the answer relayed.

use super::relay;
use super::request::RequestHead;
use super::rewrite::{self, Hop};
use super::route::RouteCache;
use super::upstream;
use super::{Client, ClientStream, Deadline, Io};
use crate::balance::PickInput;
use crate::error::ProxyError;
use crate::instance::Instance;
use crate::request::attempts::{send_with_retries, Exchange};
use crate::request::outcome::{answer_ended, answer_started, idempotent, Failure, InFlight};
use crate::request::{access, forwarding};
use crate::table::Upstream;
use crate::Shared;
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

/// What became of a request on the plain path.
#[derive(Debug, PartialEq, Eq)]
pub enum Served {
    /// Answered; the connection stays open.
    Keep,
    /// Answered; the connection closes.
    Close,
    /// Not this path's to answer (its upstream speaks HTTP/2 or TLS, or
    /// is owed a redirect): the full path takes the connection, with
    /// this request still in the buffer.
    PassOn,
}

/// Answers the request in `buf`, or leaves it to the full path.
pub async fn exchange<C: ClientStream>(
    shared: &Shared,
    client: &Client,
    req: Request<'_>,
    route: &mut RouteCache,
    io: &mut Io<C>,
    deadline: &mut Deadline<'_>,
) -> Served {
    let started = access::received(shared);
    route.host(req.head.host.of(req.buf));
    let (status, keep) = match forward(shared, client, req, route, io, deadline).await {
        Ok(Some(done)) => done,
        Ok(None) => {
            access::passed_on(shared);
            return Served::PassOn;
        }
        Err(e) => {
            let status = e.status().as_u16();
            (status, answer_locally(shared, io, e, req.head.close).await)
        }
    };
    if started.is_some() {
        let method = String::from_utf8_lossy(req.head.method.of(req.buf));
        let host = route.host(req.head.host.of(req.buf)).to_string();
        access::log(
            started,
            client.peer,
            &method,
            &host,
            req.head.path(req.buf),
            status,
        );
    }
    if keep {
        Served::Keep
    } else {
        Served::Close
    }
}

/// The proxy's own answer for a failure; false when the connection closes.
async fn answer_locally<C: ClientStream>(
    shared: &Shared,
    io: &mut Io<C>,
    e: ProxyError,
    client_close: bool,
) -> bool {
    access::answered_locally(shared, &e);
    let close = client_close || e.closes();
    rewrite::local_response(e.status(), &e.body(), close, &mut io.out);
    io.stream.write_all(&io.out).await.is_ok() && !close
}

/// Routes and forwards; the answer's status and whether the client
/// connection stays open, or `None` for a request the full path serves.
async fn forward<C: ClientStream>(
    shared: &Shared,
    client: &Client,
    req: Request<'_>,
    route: &mut RouteCache,
    io: &mut Io<C>,
    deadline: &mut Deadline<'_>,
) -> Result<Option<(u16, bool)>, ProxyError> {
    if !req.head.via.is_empty()
        && forwarding::seen_before(req.head.via.iter().map(|v| v.of(req.buf)), &shared.via)
    {
        return Err(ProxyError::SeenBefore(shared.via.clone()));
    }
    if !route.host_is_valid() {
        let host = req.head.host.of(req.buf);
        return Err(ProxyError::Client(forwarding::invalid_host(host)));
    }
    let fixed = client.fixed.as_ref();
    let (upstream, strip) = route
        .upstream(shared, fixed, || req.head.path(req.buf))
        .await?;
    if !upstream.plain_serves(client.https) {
        return Ok(None);
    }
    let hop = Hop {
        client: &client.ip,
        client_v6: client.v6,
        trusted: client.trusted,
        host: route.host(req.head.host.of(req.buf)),
        rfc7239: shared.cfg.forwarded,
        strip: strip.as_deref(),
        via: &shared.via,
        scheme: if client.https { "https" } else { "http" },
    };
    rewrite::upstream_request(req.buf, req.head, &hop, &mut io.out);
    io.out
        .extend_from_slice(&req.buf[req.head.len..req.head.total()]);
    let replayable = idempotent(req.head.method.of(req.buf));
    let headers = req.head.raw(req.buf);
    let input = PickInput {
        client_ip: client.peer.ip(),
        headers: &headers,
    };
    let mut plain = Plain { req, io, deadline };
    send_with_retries(shared, &upstream, &input, &mut plain, replayable)
        .await
        .map(Some)
}

/// The plain path's exchange: the rewritten request is in `io.out`.
struct Plain<'r, 'd, C> {
    req: Request<'r>,
    io: &'r mut Io<C>,
    deadline: &'r mut Deadline<'d>,
}

impl<C: ClientStream> Exchange for Plain<'_, '_, C> {
    /// The answer's status, and whether the client connection stays open.
    type Answer = (u16, bool);

    async fn attempt(
        &mut self,
        shared: &Shared,
        upstream: &Upstream,
        inst: &Instance,
    ) -> Result<(u16, bool), Failure> {
        let mut stream = upstream::connect(shared, inst).await?;
        let in_flight = InFlight::start(&*inst.state);
        let sent = Instant::now();
        self.deadline
            .set(tokio::time::Instant::from_std(sent) + shared.cfg.answer_timeout);
        let head_request = self.req.head.method.of(self.req.buf) == b"HEAD";
        tokio::select! {
            biased;
            r = upstream::round_trip(&mut stream, self.io, head_request) => r?,
            _ = self.deadline.passed() => {
                return Err(Failure::Timeout(format!("no answer within {:?}", shared.cfg.answer_timeout)));
            }
        };
        let status = self.io.resp.status;
        answer_started(inst, status, sent.elapsed());
        let max_idle = shared.cfg.max_idle_per_instance;
        let (end, keep) = relay::relay(stream, self.io, self.req.head.close, inst, max_idle).await;
        answer_ended(shared, upstream, inst, status, &end);
        drop(in_flight);
        Ok((status, keep))
    }
}
