//! The embedded durable store on redb: one table of records; every commit
//! is one redb write transaction with immediate durability (fsync), so a
//! batch is on disk before any of its writes is acknowledged.
//!
//! After a failed commit (disk full, I/O error) redb refuses every later
//! transaction until the database is closed and opened again. So on any
//! failure the database is dropped, and the next commit or probe opens it
//! again (redb then recovers to the last durable commit): once space
//! returns, writes succeed again without a restart.
//!
//! redb keeps free pages of its own inside its file, so on a full file
//! system a small commit can still succeed. The probe therefore first
//! writes and syncs [`PROBE_BYTES`] of new data in a file beside the
//! database: it passes only once the file system really has room again.

use super::Store;
use crate::error::{Error, Result};
use crate::records::Mutation;
use crate::state::State;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// Written by [`Store::probe`] only; never read back into the state.
const PROBE: TableDefinition<&str, u64> = TableDefinition::new("probe");
/// What the probe writes and syncs beside the database: room for more
/// than the largest write the API accepts (a 1 MiB JSON body), so that
/// a passed probe means the next real write fits too.
pub const PROBE_BYTES: usize = 2 << 20;
/// The probe's file, in the data directory; removed after each probe.
const PROBE_FILE: &str = "catalog.probe";

/// Writes and syncs [`PROBE_BYTES`] to `path`, then removes it.
fn probe_room(path: &Path) -> Result<()> {
    use std::io::Write;
    let written = (|| {
        let mut file = std::fs::File::create(path)?;
        let chunk = vec![0x5au8; 64 << 10];
        for _ in 0..PROBE_BYTES / chunk.len() {
            file.write_all(&chunk)?;
        }
        file.sync_all()
    })();
    let removed = std::fs::remove_file(path);
    written.map_err(|e| {
        Error::Storage(format!(
            "no room for {} KiB of new data in {}: {e}",
            PROBE_BYTES >> 10,
            path.parent().unwrap_or(path).display()
        ))
    })?;
    removed.map_err(|e| Error::Storage(format!("cannot remove {}: {e}", path.display())))
}

/// A redb database file under the data directory.
pub struct RedbStore {
    path: PathBuf,
    /// `None` after a failure, until the next open succeeds. Only the
    /// registry's writer thread commits, so the lock is never contended.
    db: Mutex<Option<Database>>,
}

fn storage<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::Storage(format!("{what}: {e}"))
}

fn open_db(path: &Path) -> Result<Database> {
    let db = Database::create(path)
        .map_err(|e| Error::Storage(format!("cannot open database {}: {e}", path.display())))?;
    let txn = db.begin_write().map_err(storage("begin"))?;
    txn.open_table(RECORDS).map_err(storage("open table"))?;
    txn.commit().map_err(storage("commit"))?;
    Ok(db)
}

impl RedbStore {
    /// Opens (or creates) `dir/catalog.redb`, creating `dir` if needed.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Storage(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let path = dir.join("catalog.redb");
        let db = open_db(&path)?;
        Ok(RedbStore {
            path,
            db: Mutex::new(Some(db)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Database>> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `write` in one write transaction on the open database (opening
    /// it again first if a failure closed it); on failure closes it, so
    /// the next call starts from a freshly opened one.
    fn write_txn(&self, write: impl FnOnce(&redb::WriteTransaction) -> Result<()>) -> Result<()> {
        let mut slot = self.lock();
        if slot.is_none() {
            *slot = Some(open_db(&self.path)?);
            tracing::info!(path = %self.path.display(), "database opened again after a failure");
        }
        let db = slot.as_ref().ok_or(Error::Closed)?;
        let result = db.begin_write().map_err(storage("begin")).and_then(|txn| {
            write(&txn)?;
            txn.commit().map_err(storage("commit"))
        });
        if result.is_err() {
            // Drop it: redb refuses all further transactions after an I/O
            // error until the database is opened again.
            *slot = None;
        }
        result
    }
}

impl Store for RedbStore {
    fn load(&self) -> Result<State> {
        let slot = self.lock();
        let db = slot.as_ref().ok_or(Error::Closed)?;
        let txn = db.begin_read().map_err(storage("begin read"))?;
        let table = txn.open_table(RECORDS).map_err(storage("open table"))?;
        let mut raw = Vec::new();
        for row in table.iter().map_err(storage("scan"))? {
            let (k, v) = row.map_err(storage("read"))?;
            raw.push((k.value().to_string(), v.value().to_vec()));
        }
        State::from_records(raw.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }

    fn commit(&self, mutations: &[Mutation]) -> Result<()> {
        self.write_txn(|txn| {
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
            Ok(())
        })
    }

    fn probe(&self) -> Result<()> {
        probe_room(&self.path.with_file_name(PROBE_FILE))?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.write_txn(|txn| {
            let mut table = txn.open_table(PROBE).map_err(storage("open probe table"))?;
            table.insert("probe", stamp).map_err(storage("probe"))?;
            Ok(())
        })
    }
}
