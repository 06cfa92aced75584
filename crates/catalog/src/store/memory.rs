//! A store that keeps nothing: for `--in-memory` throwaway runs and tests.

use super::Store;
use crate::error::Result;
use crate::records::Mutation;
use crate::state::State;

/// Commits succeed at once and nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn load(&self) -> Result<State> {
        Ok(State::default())
    }

    fn commit(&self, _mutations: &[Mutation]) -> Result<()> {
        Ok(())
    }
}
