//! The registry on a shared store (etcd; see `store/shared.rs`): the same
//! single writer thread, which now also applies the commits of the other
//! servers as the store's follower delivers them, and commits its own
//! batches guarded by the position of its view.
//!
//! Read-your-writes: a write is acknowledged only after its commit is in
//! this server's view (the writer swaps in the state it committed, which
//! is exactly the store's state at that position, as the guard held).

use super::*;
use crate::store::{FollowEvent, Guarded, SharedStore};
use std::collections::VecDeque;

/// Records touched by one guarded commit, at most (plus the last
/// command's): etcd refuses transactions of more than `--max-txn-ops`
/// operations (128 by default).
const MAX_BATCH_RECORDS: usize = 64;
/// Conflicting commits in a row before a batch is given up.
const MAX_CONFLICTS: usize = 200;
/// How long the writer waits for its follower to deliver the commits that
/// won over its own before it loads the whole state again.
const CATCH_UP: Duration = Duration::from_secs(5);
/// Longest wait of a `?consistent` read for the view to catch up.
const CONSISTENT_WAIT: Duration = Duration::from_secs(10);

/// What a registry on a shared store keeps beside the embedded one's.
pub(super) struct Follow {
    store: Arc<dyn SharedStore>,
    /// The position of the view (the store's revision it reflects).
    position: tokio::sync::watch::Receiver<u64>,
}

impl Registry {
    /// Loads the shared store's state, starts following it and starts the
    /// writer thread. Blocking (it loads); call it off the async runtime.
    pub fn open_shared(store: Arc<dyn SharedStore>) -> Result<Arc<Registry>> {
        Registry::open_shared_with_log(store, crate::changelog::LOG_CAPACITY)
    }

    /// Like [`Registry::open_shared`], keeping `log_capacity` entries of
    /// change log (see [`Registry::open_with_log`]).
    pub fn open_shared_with_log(
        store: Arc<dyn SharedStore>,
        log_capacity: usize,
    ) -> Result<Arc<Registry>> {
        let (mut state, position) = store.load()?;
        state.log = crate::changelog::ChangeLog::with_capacity(state.index, log_capacity);
        let shared = Shared::at(state);
        let (tx, rx) = mpsc::channel(QUEUE);
        let (position_tx, position_rx) = tokio::sync::watch::channel(position);
        let follow_tx = tx.clone();
        store.follow(
            position,
            Box::new(move |event| {
                let tx = follow_tx.clone();
                Box::pin(async move { tx.send(Msg::Follow(event)).await.is_ok() })
            }),
        );
        let writer_shared = shared.clone();
        let writer_store = store.clone();
        spawn_writer(move || {
            let mut w = SharedWriter {
                shared: &writer_shared,
                store: writer_store.as_ref(),
                rx,
                position,
                position_tx,
                pending: VecDeque::new(),
                shutdown: None,
                log_capacity,
                contended_until: std::time::Instant::now(),
            };
            w.run()
        })?;
        let follow = Follow {
            store,
            position: position_rx,
        };
        Ok(Registry::assemble(shared, tx, Some(follow)))
    }

    /// The position of this server's view: the shared store's revision it
    /// reflects (on the embedded store, the catalog index).
    pub fn position(&self) -> u64 {
        match &self.follow {
            Some(f) => *f.position.borrow(),
            None => self.snapshot().index(),
        }
    }

    /// Whether the catalog is shared with other servers (etcd).
    pub fn is_shared(&self) -> bool {
        self.follow.is_some()
    }

    /// For a `?consistent` read: returns once this server's view holds
    /// every commit the shared store had when it was called (at once on
    /// the embedded store, which has no other writer).
    pub async fn consistent(&self) -> Result<()> {
        let Some(follow) = &self.follow else {
            return Ok(());
        };
        let store = follow.store.clone();
        let head = tokio::task::spawn_blocking(move || store.position())
            .await
            .map_err(|e| Error::Storage(format!("consistent read: {e}")))?;
        // etcd's answer (with quorum) is what the follower's probe asks
        // too: it ends or starts a failure the same way.
        let answered = head.as_ref().map(|_| ()).map_err(Clone::clone);
        self.shared
            .store_health
            .record(&answered, &self.shared.metrics);
        let head = head?;
        self.reach(head, CONSISTENT_WAIT).await
    }

    /// Returns once this server's view is at store position `head` or
    /// beyond (at once on the embedded store), or fails after `wait`.
    pub(super) async fn reach(&self, head: u64, wait: Duration) -> Result<()> {
        let Some(follow) = &self.follow else {
            return Ok(());
        };
        let mut position = follow.position.clone();
        let reached = tokio::time::timeout(wait, position.wait_for(|p| *p >= head))
            .await
            .map(|r| r.map(|_| ()));
        match reached {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Storage(format!(
                "this server's view did not reach the store's revision {head} within {wait:?}"
            ))),
        }
    }
}

struct SharedWriter<'a> {
    shared: &'a Shared,
    store: &'a dyn SharedStore,
    rx: mpsc::Receiver<Msg>,
    /// The store position the current state reflects.
    position: u64,
    position_tx: tokio::sync::watch::Sender<u64>,
    /// Writes received and not answered yet, in arrival order.
    pending: VecDeque<Request>,
    shutdown: Option<oneshot::Sender<()>>,
    /// Change-log entries kept (a reloaded state starts a new log).
    log_capacity: usize,
    /// Until when another server is taken to be writing too (set by each
    /// lost race): small batches then wait a moment for more writes.
    contended_until: std::time::Instant,
}

/// How long after a lost race this server gathers writes before it
/// commits a small batch (see [`SharedWriter::gather`]).
const CONTENDED_FOR: Duration = Duration::from_millis(500);
/// At most this long is spent gathering.
const GATHER: Duration = Duration::from_millis(2);

impl SharedWriter<'_> {
    /// While another server writes too, every commit of either one makes
    /// the other's in-flight commit lose and start again. A server with
    /// few writes then wins every race with tiny batches while the one
    /// with many loses each time, and throughput falls to the tiny
    /// batches. So under contention a small batch first waits (briefly)
    /// for more writes: fewer, fuller commits, and room for the other
    /// server's.
    fn gather(&mut self) {
        if std::time::Instant::now() >= self.contended_until {
            return;
        }
        let deadline = std::time::Instant::now() + GATHER;
        while self.shutdown.is_none()
            && self.pending.len() < MAX_BATCH_RECORDS / 2
            && std::time::Instant::now() < deadline
        {
            match self.rx.try_recv() {
                Ok(msg) => self.take(msg),
                Err(mpsc::error::TryRecvError::Empty) => {
                    std::thread::sleep(Duration::from_micros(100))
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
    }

    fn run(&mut self) -> Option<oneshot::Sender<()>> {
        loop {
            if self.pending.is_empty() && self.shutdown.is_none() {
                match self.rx.blocking_recv() {
                    Some(msg) => self.take(msg),
                    None => return None,
                }
            }
            while self.shutdown.is_none() && self.pending.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(msg) => self.take(msg),
                    Err(_) => break,
                }
            }
            if !self.pending.is_empty() {
                self.gather();
                self.commit_some();
            }
            if let Some(done) = self.shutdown.take() {
                self.rx.close();
                for r in self.pending.drain(..) {
                    let _ = r.reply.send(Err(Error::Closed));
                }
                while let Ok(msg) = self.rx.try_recv() {
                    if let Msg::Write(r) = msg {
                        let _ = r.reply.send(Err(Error::Closed));
                    }
                }
                return Some(done);
            }
        }
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Write(r) => self.pending.push_back(r),
            Msg::Shutdown(done) => self.shutdown = Some(done),
            Msg::Follow(event) => self.follow(event),
        }
    }

    fn follow(&mut self, event: FollowEvent) {
        match event {
            FollowEvent::Commits(commits) => {
                for c in commits {
                    // Our own commits are in the view already.
                    if c.position <= self.position {
                        continue;
                    }
                    let mut next = (*self.shared.current.load_full()).clone();
                    match next.apply_records(&c.mutations) {
                        Ok(changes) => {
                            let index = next.index();
                            self.shared.current.store(Arc::new(next));
                            self.shared.hub.notify(&changes, index);
                            self.advance(c.position);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, position = c.position, "cannot apply a followed commit; loading the whole catalog again");
                            self.reload();
                        }
                    }
                }
            }
            FollowEvent::Reload(state, position) => self.replace(*state, position),
            FollowEvent::Health(outcome) => {
                self.shared
                    .store_health
                    .record(&outcome, &self.shared.metrics);
            }
        }
    }

    fn advance(&mut self, position: u64) {
        self.position = position;
        self.position_tx.send_replace(position);
    }

    fn replace(&mut self, mut state: State, position: u64) {
        // Nothing before the loaded index is in the new log: a stream
        // consumer behind it gets a snapshot.
        state.log = crate::changelog::ChangeLog::with_capacity(state.index, self.log_capacity);
        let index = state.index();
        self.shared.current.store(Arc::new(state));
        self.shared.hub.notify_all(index);
        self.advance(position);
    }

    fn reload(&mut self) {
        match self.store.load() {
            Ok((state, position)) => self.replace(state, position),
            Err(e) => tracing::error!(error = %e, "cannot load the catalog from the store"),
        }
    }

    /// Commits a batch from the front of `pending` and answers it.
    fn commit_some(&mut self) {
        let mut conflicts = 0;
        loop {
            let mut next = (*self.shared.current.load_full()).clone();
            let mut txn = Txn::new(&mut next);
            let mut results = Vec::new();
            for req in self.pending.iter() {
                if txn.mutations.len() >= MAX_BATCH_RECORDS || results.len() >= MAX_BATCH {
                    break;
                }
                results.push(txn.apply(req.cmd.clone()));
            }
            let (mutations, changes) = txn.into_mutations();
            let taken: Vec<Request> = self.pending.drain(..results.len()).collect();
            if mutations.is_empty() {
                return answer(taken, results);
            }
            self.shared.metrics.writes.add(taken.len() as u64);
            let started = std::time::Instant::now();
            let committed = self.store.commit(self.position, &mutations);
            self.shared
                .metrics
                .commit_seconds
                .observe(started.elapsed());
            match committed {
                Ok(Guarded::Committed(position)) => {
                    self.shared
                        .store_health
                        .record(&Ok(()), &self.shared.metrics);
                    self.shared.metrics.commits.inc();
                    let index = next.index();
                    self.shared.current.store(Arc::new(next));
                    self.shared.hub.notify(&changes, index);
                    self.advance(position);
                    return answer(taken, results);
                }
                Ok(Guarded::Behind(head)) => {
                    conflicts += 1;
                    self.shared.metrics.commit_conflicts.inc();
                    self.contended_until = std::time::Instant::now() + CONTENDED_FOR;
                    // Put them back in front, in order, and try again on
                    // the view that includes what won.
                    for r in taken.into_iter().rev() {
                        self.pending.push_front(r);
                    }
                    if conflicts > MAX_CONFLICTS {
                        let msg = format!("gave up after {conflicts} conflicting commits");
                        tracing::error!("{msg}");
                        let n = results.len();
                        for r in self.pending.drain(..n) {
                            let _ = r.reply.send(Err(Error::Storage(msg.clone())));
                        }
                        return;
                    }
                    self.catch_up(head);
                }
                Err(e) => {
                    tracing::error!(error = %e, writes = taken.len(), "shared store commit failed; batch rejected");
                    self.shared
                        .store_health
                        .record(&Err(e.clone()), &self.shared.metrics);
                    for r in taken {
                        let _ = r.reply.send(Err(e.clone()));
                    }
                    return;
                }
            }
        }
    }

    /// Takes messages (followed commits, new writes) until the view is at
    /// `head`; loads everything again if the follower does not get there.
    fn catch_up(&mut self, head: u64) {
        let deadline = std::time::Instant::now() + CATCH_UP;
        while self.position < head {
            match self.rx.try_recv() {
                Ok(msg) => self.take(msg),
                Err(mpsc::error::TryRecvError::Disconnected) => return,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if std::time::Instant::now() >= deadline {
                        tracing::warn!(
                            head,
                            position = self.position,
                            "the follower is late; loading the catalog again"
                        );
                        return self.reload();
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }
}

fn answer(taken: Vec<Request>, results: Vec<Result<Outcome>>) {
    for (req, result) in taken.into_iter().zip(results) {
        let _ = req.reply.send(result);
    }
}
