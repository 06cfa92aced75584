//! The change log: a bounded, ordered record of what each commit touched
//! (a service, a node, a KV key), kept in the [`State`](crate::State) so a
//! consumer can ask "what changed since index N" and do work proportional
//! to that, or learn that N is too old and it must start from a snapshot.
//! Memory only: after a restart the log starts at the loaded index.

use imbl::Vector;

/// Entries kept by default; older ones are dropped (and the floor moves up).
pub const LOG_CAPACITY: usize = 65_536;

/// One thing a commit changed; readers fetch its current value from the
/// state they hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Change {
    /// A service: its instances, their checks or their nodes (any of
    /// them: a reader looks at the whole service).
    Service(String),
    /// One instance of a service (service, node, instance ID): the
    /// instance, its checks or its node changed, or it left the service.
    /// A change of the service as [`Change::Service`] is, for a reader
    /// that looks at whole services; a reader of instances looks at this
    /// one alone.
    Instance(String, String, String),
    /// A node record (added, changed or removed).
    Node(String),
    /// A KV key (put or deleted).
    Kv(String),
}

/// The log itself (cheap to clone: a persistent vector).
#[derive(Clone, Debug)]
pub struct ChangeLog {
    entries: Vector<(u64, Change)>,
    /// Every change with an index above this is in `entries`.
    floor: u64,
    /// Most entries kept.
    capacity: usize,
}

impl Default for ChangeLog {
    fn default() -> Self {
        ChangeLog::starting_at(0)
    }
}

impl ChangeLog {
    /// An empty log that knows nothing before `index`.
    pub fn starting_at(index: u64) -> Self {
        ChangeLog::with_capacity(index, LOG_CAPACITY)
    }

    /// An empty log that knows nothing before `index` and keeps at most
    /// `capacity` entries (at least 1).
    pub fn with_capacity(index: u64, capacity: usize) -> Self {
        ChangeLog {
            entries: Vector::new(),
            floor: index,
            capacity: capacity.max(1),
        }
    }

    /// Forgets every entry: nothing at or before `index` can be followed
    /// change by change any more (the whole state was replaced).
    pub(crate) fn reset_at(&mut self, index: u64) {
        self.entries = Vector::new();
        self.floor = self.floor.max(index);
    }

    /// Records `change` at `index` (indexes never go down).
    pub(crate) fn push(&mut self, index: u64, change: Change) {
        if self
            .entries
            .back()
            .is_some_and(|(i, c)| *i == index && *c == change)
        {
            return;
        }
        self.entries.push_back((index, change));
        while self.entries.len() > self.capacity {
            if let Some((i, _)) = self.entries.pop_front() {
                // Entries of the same index may remain; the floor says
                // that index may be incomplete, so it excludes it.
                self.floor = self.floor.max(i);
            }
        }
    }

    /// Every change after `index`, oldest first, or `None` when the log
    /// no longer reaches back that far (the reader needs a snapshot).
    /// O(log n) to find the start; the result shares the log's nodes.
    pub fn since(&self, index: u64) -> Option<Vector<(u64, Change)>> {
        if index < self.floor {
            return None;
        }
        let start = self
            .entries
            .binary_search_by(|(i, _)| {
                if *i <= index {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            })
            .unwrap_or_else(|at| at);
        Some(self.entries.skip(start))
    }

    /// Indexes above this one are all in the log.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the log holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_returns_later_changes_in_order() {
        let mut log = ChangeLog::starting_at(3);
        for (i, name) in [(4, "a"), (4, "b"), (5, "a"), (7, "c")] {
            log.push(i, Change::Service(name.into()));
        }
        log.push(7, Change::Service("c".into()));
        let names = |from| -> Option<Vec<(u64, String)>> {
            Some(
                log.since(from)?
                    .iter()
                    .map(|(i, c)| match c {
                        Change::Service(n) => (*i, n.clone()),
                        _ => unreachable!(),
                    })
                    .collect(),
            )
        };
        assert_eq!(names(2), None, "before the floor");
        assert_eq!(
            names(3).unwrap().len(),
            4,
            "duplicate of the last entry kept once"
        );
        assert_eq!(names(4).unwrap(), vec![(5, "a".into()), (7, "c".into())]);
        assert_eq!(names(7).unwrap(), vec![]);
        assert_eq!(names(100).unwrap(), vec![]);
    }

    #[test]
    fn the_floor_rises_as_old_entries_go() {
        let mut log = ChangeLog::starting_at(0);
        for i in 1..=(LOG_CAPACITY as u64 + 10) {
            log.push(i, Change::Kv(format!("k{i}")));
        }
        assert_eq!(log.len(), LOG_CAPACITY);
        assert_eq!(log.floor(), 10);
        assert!(log.since(9).is_none());
        assert_eq!(log.since(10).unwrap().len(), LOG_CAPACITY);
    }
}
