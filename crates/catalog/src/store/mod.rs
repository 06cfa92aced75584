//! Durable stores. A store keeps the state's records; the registry's
//! writer hands it each batch of record mutations and acknowledges the
//! batch's writes only once `commit` has returned, i.e. once it is durable.

mod memory;
mod redb;
mod shared;

pub use self::memory::MemoryStore;
pub use self::redb::RedbStore;
pub use self::shared::{FollowEvent, FollowSink, Followed, Guarded, SharedStore};

use crate::error::Result;
use crate::records::Mutation;
use crate::state::State;

/// Where committed records live. Calls are blocking; the registry makes
/// them from its own writer thread.
pub trait Store: Send + Sync + 'static {
    /// Reads every record back into a state (at start-up).
    fn load(&self) -> Result<State>;
    /// Applies a batch of mutations atomically and durably.
    fn commit(&self, mutations: &[Mutation]) -> Result<()>;
    /// A durable write that changes no record: after a failed commit, the
    /// registry calls it now and then to learn, without waiting for a
    /// client's write, that the store works again. Only a passed probe
    /// ends a failure: it must prove room for new data, not merely that
    /// one small commit fitted in space the store had kept.
    fn probe(&self) -> Result<()> {
        Ok(())
    }
}
