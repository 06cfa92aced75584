//! The embedded durable store on redb: one table of records; every commit
//! is one redb write transaction with immediate durability (fsync), so a
//! batch is on disk before any of its writes is acknowledged.

use super::Store;
use crate::error::{Error, Result};
use crate::records::Mutation;
use crate::state::State;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");

/// A redb database file under the data directory.
pub struct RedbStore {
    db: Database,
}

fn storage<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::Storage(format!("{what}: {e}"))
}

impl RedbStore {
    /// Opens (or creates) `dir/catalog.redb`, creating `dir` if needed.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Storage(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let path = dir.join("catalog.redb");
        let db = Database::create(&path)
            .map_err(|e| Error::Storage(format!("cannot open database {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(storage("begin"))?;
        txn.open_table(RECORDS).map_err(storage("open table"))?;
        txn.commit().map_err(storage("commit"))?;
        Ok(RedbStore { db })
    }
}

impl Store for RedbStore {
    fn load(&self) -> Result<State> {
        let txn = self.db.begin_read().map_err(storage("begin read"))?;
        let table = txn.open_table(RECORDS).map_err(storage("open table"))?;
        let mut raw = Vec::new();
        for row in table.iter().map_err(storage("scan"))? {
            let (k, v) = row.map_err(storage("read"))?;
            raw.push((k.value().to_string(), v.value().to_vec()));
        }
        State::from_records(raw.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }

    fn commit(&self, mutations: &[Mutation]) -> Result<()> {
        let txn = self.db.begin_write().map_err(storage("begin"))?;
        {
            let mut table = txn.open_table(RECORDS).map_err(storage("open table"))?;
            for m in mutations {
                match &m.value {
                    Some(v) => {
                        table
                            .insert(m.key.as_str(), v.as_slice())
                            .map_err(storage("insert"))?;
                    }
                    None => {
                        table.remove(m.key.as_str()).map_err(storage("remove"))?;
                    }
                }
            }
        }
        txn.commit().map_err(storage("commit"))
    }
}
