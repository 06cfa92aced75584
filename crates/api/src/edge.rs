//! What every API request passes before its handler: the request log
//! ([`crate::access`]) and the leadership guard ([`crate::leadership`]).
//!
//! One tower layer rather than two `from_fn` middlewares, because a
//! middleware's future is boxed and holds the request's state for as long
//! as the handler runs: for a parked blocking query that was two boxes of
//! ~1.4 KiB each, for minutes. Here a request that needs neither (the
//! common case: no access log, the store healthy) goes to its handler
//! directly, with nothing added to its future.

use crate::{access, leadership, ApiState};
use axum::extract::Request;
use axum::response::Response;
use futures::future::{BoxFuture, Either};
use std::convert::Infallible;
use std::task::{Context, Poll};
use tower::{Layer, Service, ServiceExt};

/// Wraps a router's routes in [`Edge`].
#[derive(Clone)]
pub(crate) struct EdgeLayer {
    api: ApiState,
}

impl EdgeLayer {
    pub(crate) fn new(api: ApiState) -> Self {
        EdgeLayer { api }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;
    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            api: self.api.clone(),
        }
    }
}

/// See the module doc.
#[derive(Clone)]
pub(crate) struct Edge<S> {
    inner: S,
    api: ApiState,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let log = access::wanted(&self.api);
        let guard = leadership::wanted(&self.api, &req);
        if !log && !guard {
            return Either::Left(self.inner.call(req));
        }
        let api = self.api.clone();
        let inner = self.inner.clone();
        Either::Right(Box::pin(async move {
            let handler = |req: Request| async move {
                match inner.oneshot(req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            };
            let guarded = |req: Request| async {
                if guard {
                    leadership::guard(&api, req, handler).await
                } else {
                    handler(req).await
                }
            };
            Ok(if log {
                access::log(&api, req, guarded).await
            } else {
                guarded(req).await
            })
        }))
    }
}
