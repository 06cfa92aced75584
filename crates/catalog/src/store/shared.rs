//! A store several servers share (etcd). Unlike an embedded [`Store`],
//! the records change under this server's feet: every server commits
//! batches guarded by the position of the view it computed them from, and
//! follows everyone's commits back into its own view.
//!
//! The position is the store's revision of the last commit to the catalog
//! (in etcd: the mod revision of the `m/index` record, which every commit
//! writes). A commit guarded by position `p` succeeds only if nobody
//! committed since `p`, so of two servers racing from the same view exactly
//! one wins; the loser catches up and applies its commands again. As every
//! commit is serialized this way, the catalog index a commit assigns
//! (`X-Consul-Index`, Create/ModifyIndex) is the same on every server.
//!
//! [`Store`]: super::Store

use crate::error::Result;
use crate::records::Mutation;
use crate::state::State;

/// The outcome of a guarded commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarded {
    /// Committed; the new position.
    Committed(u64),
    /// Someone committed first; the store is at this position now.
    Behind(u64),
}

/// One commit read back from the shared store.
#[derive(Clone, Debug)]
pub struct Followed {
    /// The position of this commit.
    pub position: u64,
    /// Its record mutations.
    pub mutations: Vec<Mutation>,
}

/// What a follower hands the registry.
#[derive(Debug)]
pub enum FollowEvent {
    /// Commits in position order.
    Commits(Vec<Followed>),
    /// The store could not deliver every commit since the view's position
    /// (etcd compacted them): the whole state, loaded again, at a position.
    Reload(Box<State>, u64),
    /// Whether the store answers (with quorum) right now.
    Health(Result<()>),
}

/// Where a follower hands its events: resolves to `false` once the
/// registry is gone (the follower then stops).
pub type FollowSink =
    Box<dyn Fn(FollowEvent) -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

/// A store shared by several servers. Calls are blocking; the registry
/// makes them from its writer thread.
pub trait SharedStore: Send + Sync + 'static {
    /// Every record, and the position the state reflects.
    fn load(&self) -> Result<(State, u64)>;
    /// Applies `mutations` atomically, durably, and only if the store is
    /// still at position `base`.
    fn commit(&self, base: u64, mutations: &[Mutation]) -> Result<Guarded>;
    /// The store's current position, read linearizably (a `?consistent`
    /// read waits until the view reaches it).
    fn position(&self) -> Result<u64>;
    /// Starts following every commit after `from` (in the background),
    /// handing each to `sink` in order, until `sink` returns `false`.
    fn follow(&self, from: u64, sink: FollowSink);
}
