//! Linearizability of the KV on `shoal server --store etcd`: clients on
//! two servers run a mixed history (puts, `?consistent` reads, CAS, default
//! reads) on a few keys while etcd members are killed and restarted one at
//! a time, and the recorded history is checked with a Wing–Gong search
//! (written here, below, with its own tests).
//!
//! The model, per key (linearizability is local, so keys are checked one
//! by one): a register holding `None` or one of the unique values written.
//! - a put writes its value;
//! - a `?consistent` read returns the value;
//! - a CAS is a `?consistent` read (a separate op) followed by a
//!   `?cas=ModifyIndex` put. Every write puts a value never written before,
//!   so "ModifyIndex is still the one read" is "the value is still the one
//!   read", and the CAS is a compare-and-set on values.
//!
//! A write answered with anything but success (500 after a timeout, a
//! broken connection) may or may not have been applied: it gets no return
//! time, so it may take effect at any point after it was sent, or never
//! (placed after everything else). A failed read is dropped. Default reads
//! may be stale by design (served from the server's memory), so they are
//! only checked to return a value that was written, not linearized.

mod common;

use base64::Engine;
use checker::{Kind, Op, Out};
use reqwest::StatusCode;
use shoal_testkit::EtcdCluster;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// A Wing–Gong linearizability checker for one register.
mod checker {
    use std::collections::HashSet;

    /// What an operation asked for.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Kind {
        /// Put this value.
        Write(u32),
        /// Read the value.
        Read,
        /// Put `new` if the value is `expected`.
        Cas { expected: Option<u32>, new: u32 },
    }

    /// What it answered.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Out {
        /// A put was acknowledged.
        Written,
        /// A read returned this.
        Value(Option<u32>),
        /// A CAS said whether it swapped.
        Swapped(bool),
        /// No answer that tells: the op may or may not have taken effect.
        Unknown,
    }

    /// One operation of a history; times in any unit, from one clock.
    #[derive(Clone, Copy, Debug)]
    pub struct Op {
        /// When it was sent.
        pub call: u64,
        /// When its answer came; `None` when the outcome is unknown.
        pub ret: Option<u64>,
        pub kind: Kind,
        pub out: Out,
    }

    impl Op {
        fn end(&self) -> u64 {
            self.ret.unwrap_or(u64::MAX)
        }
    }

    /// The register's next state if `op` taking effect on `state` could
    /// have answered what it did; `None` if it could not.
    fn step(state: Option<u32>, op: &Op) -> Option<Option<u32>> {
        match (op.kind, op.out) {
            (Kind::Write(v), Out::Written | Out::Unknown) => Some(Some(v)),
            (Kind::Read, Out::Value(v)) => (v == state).then_some(state),
            (Kind::Read, Out::Unknown) => Some(state),
            (Kind::Cas { expected, new }, Out::Swapped(swapped)) => {
                match (state == expected, swapped) {
                    (true, true) => Some(Some(new)),
                    (false, false) => Some(state),
                    _ => None,
                }
            }
            (Kind::Cas { expected, new }, Out::Unknown) => {
                Some(if state == expected { Some(new) } else { state })
            }
            _ => None,
        }
    }

    /// Stands for every value that is never observed.
    const UNSEEN: u32 = u32::MAX;

    /// Searches past this many states before giving up (an error).
    const MAX_STEPS: usize = 5_000_000;

    struct Search<'a> {
        ops: &'a [Op],
        done: Vec<u64>,
        left: usize,
        /// Ops left whose outcome is known.
        known_left: usize,
        seen: HashSet<(Vec<u64>, Option<u32>)>,
        steps: usize,
        /// The most ops linearized at once, and the state then.
        best: (usize, Option<u32>, Vec<u64>),
    }

    impl Search<'_> {
        fn is_done(&self, i: usize) -> bool {
            self.done[i / 64] & (1 << (i % 64)) != 0
        }

        fn flip(&mut self, i: usize) {
            self.done[i / 64] ^= 1 << (i % 64);
        }

        fn run(&mut self, state: Option<u32>) -> Result<bool, String> {
            // What is left has unknown outcomes: it can all go last.
            if self.known_left == 0 {
                return Ok(true);
            }
            if !self.seen.insert((self.done.clone(), state)) {
                return Ok(false);
            }
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err(format!("gave up after {MAX_STEPS} states"));
            }
            let placed = self.ops.len() - self.left;
            if placed > self.best.0 {
                self.best = (placed, state, self.done.clone());
            }
            // The next op to take effect is one that was sent before every
            // op left had answered.
            let first_end = (0..self.ops.len())
                .filter(|i| !self.is_done(*i))
                .map(|i| self.ops[i].end())
                .min()
                .unwrap_or(u64::MAX);
            // Known outcomes first, the earliest answered first (the order
            // a correct history most likely took); ops of unknown outcome
            // only when nothing else fits.
            let mut candidates: Vec<usize> = (0..self.ops.len())
                .take_while(|i| self.ops[*i].call <= first_end)
                .filter(|i| !self.is_done(*i))
                .collect();
            // Of ops of unknown outcome that do the same, only the first
            // sent is tried: whatever order works with a later one works
            // with the first in its place.
            let mut unknown_kinds = Vec::new();
            candidates.retain(|i| {
                let op = &self.ops[*i];
                if op.ret.is_some() || !unknown_kinds.contains(&op.kind) {
                    unknown_kinds.push(op.kind);
                    true
                } else {
                    false
                }
            });
            candidates.sort_by_key(|i| (self.ops[*i].ret.is_none(), self.ops[*i].end()));
            for i in candidates {
                let Some(next) = step(state, &self.ops[i]) else {
                    continue;
                };
                let known = self.ops[i].ret.is_some() as usize;
                self.flip(i);
                self.left -= 1;
                self.known_left -= known;
                let found = self.run(next)?;
                self.flip(i);
                self.left += 1;
                self.known_left += known;
                if found {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }

    /// `Ok` if the history of one register (starting absent) is
    /// linearizable; else what could not be placed.
    pub fn check(history: &[Op]) -> Result<(), String> {
        // A value no read returned and no CAS expected only ever fails
        // equality tests: every such value is one and the same to the
        // model, which lets same-looking ops of unknown outcome be taken
        // as interchangeable (see `run`).
        let observed: HashSet<u32> = history
            .iter()
            .filter_map(|o| match (o.kind, o.out) {
                (Kind::Read, Out::Value(v)) => v,
                (Kind::Cas { expected, .. }, _) => expected,
                _ => None,
            })
            .collect();
        let unseen = |v: u32| if observed.contains(&v) { v } else { UNSEEN };
        let mut ops: Vec<Op> = history
            .iter()
            .filter(|o| !(o.kind == Kind::Read && o.out == Out::Unknown))
            .map(|o| {
                let kind = match o.kind {
                    Kind::Write(v) => Kind::Write(unseen(v)),
                    Kind::Cas { expected, new } => Kind::Cas {
                        expected,
                        new: unseen(new),
                    },
                    Kind::Read => Kind::Read,
                };
                Op { kind, ..*o }
            })
            .collect();
        ops.sort_by_key(|o| o.call);
        let mut search = Search {
            ops: &ops,
            done: vec![0; ops.len().div_ceil(64)],
            left: ops.len(),
            known_left: ops.iter().filter(|o| o.ret.is_some()).count(),
            seen: HashSet::new(),
            steps: 0,
            best: (0, None, vec![0; ops.len().div_ceil(64)]),
        };
        if search.run(None)? {
            return Ok(());
        }
        let (placed, state, done) = search.best.clone();
        let is_done = |i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        let first_end = (0..ops.len())
            .filter(|i| !is_done(*i))
            .map(|i| ops[i].end())
            .min()
            .unwrap_or(u64::MAX);
        let stuck: Vec<String> = (0..ops.len())
            .filter(|i| !is_done(*i) && ops[*i].call <= first_end)
            .map(|i| format!("{:?}", ops[i]))
            .collect();
        let state = match state {
            Some(UNSEEN) => format!("a value never read ({UNSEEN})"),
            other => format!("{other:?}"),
        };
        Err(format!(
            "not linearizable: {placed} of {} ops placed, the value then {state}, and none of \
             these fits next ({UNSEEN} stands for any value never read):\n  {}",
            ops.len(),
            stuck.join("\n  ")
        ))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn op(call: u64, ret: u64, kind: Kind, out: Out) -> Op {
            Op {
                call,
                ret: Some(ret),
                kind,
                out,
            }
        }
        fn write(call: u64, ret: u64, v: u32) -> Op {
            op(call, ret, Kind::Write(v), Out::Written)
        }
        fn read(call: u64, ret: u64, v: Option<u32>) -> Op {
            op(call, ret, Kind::Read, Out::Value(v))
        }
        fn cas(call: u64, ret: u64, expected: Option<u32>, new: u32, swapped: bool) -> Op {
            op(
                call,
                ret,
                Kind::Cas { expected, new },
                Out::Swapped(swapped),
            )
        }
        fn unknown(call: u64, kind: Kind) -> Op {
            Op {
                call,
                ret: None,
                kind,
                out: Out::Unknown,
            }
        }

        #[test]
        fn sequential_histories_that_follow_the_register_pass() {
            let h = [
                read(0, 1, None),
                cas(2, 3, None, 1, true),
                write(4, 5, 2),
                read(6, 7, Some(2)),
                cas(8, 9, Some(1), 3, false),
                cas(10, 11, Some(2), 3, true),
                read(12, 13, Some(3)),
            ];
            check(&h).unwrap();
        }

        #[test]
        fn a_stale_read_is_rejected() {
            let h = [write(0, 1, 1), write(2, 3, 2), read(4, 5, Some(1))];
            let err = check(&h).unwrap_err();
            assert!(err.contains("not linearizable"), "{err}");
        }

        #[test]
        fn a_read_concurrent_with_a_write_may_see_either_value() {
            for seen in [Some(1), Some(2)] {
                check(&[write(0, 1, 1), write(2, 6, 2), read(3, 4, seen)]).unwrap();
            }
            // But once one reader saw the new value, a later one cannot
            // see the old one.
            let h = [
                write(0, 1, 1),
                write(2, 20, 2),
                read(3, 4, Some(2)),
                read(5, 6, Some(1)),
            ];
            assert!(check(&h).is_err());
        }

        #[test]
        fn a_value_never_written_is_rejected() {
            assert!(check(&[write(0, 1, 1), read(2, 3, Some(7))]).is_err());
            assert!(check(&[read(0, 1, Some(1)), write(2, 3, 1)]).is_err());
        }

        #[test]
        fn two_winners_of_one_cas_are_rejected() {
            let h = [
                write(0, 1, 1),
                cas(2, 10, Some(1), 2, true),
                cas(3, 11, Some(1), 3, true),
            ];
            assert!(check(&h).is_err());
            // One winner and one loser is fine, in either order.
            let h = [
                write(0, 1, 1),
                cas(2, 10, Some(1), 2, false),
                cas(3, 11, Some(1), 3, true),
            ];
            check(&h).unwrap();
        }

        #[test]
        fn a_cas_that_fails_on_a_matching_value_is_rejected() {
            assert!(check(&[write(0, 1, 1), cas(2, 3, Some(1), 2, false)]).is_err());
            assert!(check(&[cas(0, 1, None, 2, false)]).is_err());
        }

        #[test]
        fn a_write_of_unknown_outcome_may_apply_late_or_never() {
            let lost = unknown(2, Kind::Write(2));
            check(&[write(0, 1, 1), lost, read(10, 11, Some(1))]).unwrap();
            check(&[write(0, 1, 1), lost, read(10, 11, Some(2))]).unwrap();
            check(&[
                write(0, 1, 1),
                lost,
                read(10, 11, Some(1)),
                read(12, 13, Some(2)),
            ])
            .unwrap();
            // Once seen, it cannot be undone.
            let h = [
                write(0, 1, 1),
                lost,
                read(10, 11, Some(2)),
                read(12, 13, Some(1)),
            ];
            assert!(check(&h).is_err());
            // Nor can it take effect before it was sent.
            assert!(check(&[
                write(0, 1, 1),
                read(2, 3, Some(2)),
                unknown(4, Kind::Write(2))
            ])
            .is_err());
            // A CAS of unknown outcome swaps only on its expected value.
            let maybe = unknown(
                2,
                Kind::Cas {
                    expected: Some(9),
                    new: 3,
                },
            );
            assert!(check(&[write(0, 1, 1), maybe, read(10, 11, Some(3))]).is_err());
            let maybe = unknown(
                2,
                Kind::Cas {
                    expected: Some(1),
                    new: 3,
                },
            );
            check(&[write(0, 1, 1), maybe, read(10, 11, Some(3))]).unwrap();
        }

        /// A tiny deterministic generator (xorshift64).
        struct Rng(u64);
        impl Rng {
            fn next(&mut self, n: u64) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 % n
            }
        }

        /// Whether some order of `ops` that keeps real-time order follows
        /// the register: every permutation is tried (small histories only).
        fn brute_force(ops: &[Op]) -> bool {
            fn go(ops: &[Op], used: &mut Vec<bool>, state: Option<u32>) -> bool {
                if used.iter().zip(ops).all(|(u, o)| *u || o.ret.is_none()) {
                    return true;
                }
                for i in 0..ops.len() {
                    if used[i] {
                        continue;
                    }
                    // No op left may have answered before `i` was sent.
                    let blocked =
                        (0..ops.len()).any(|j| !used[j] && j != i && ops[j].end() < ops[i].call);
                    if blocked {
                        continue;
                    }
                    if let Some(next) = step(state, &ops[i]) {
                        used[i] = true;
                        if go(ops, used, next) {
                            return true;
                        }
                        used[i] = false;
                    }
                }
                false
            }
            go(ops, &mut vec![false; ops.len()], None)
        }

        /// Random small histories of overlapping ops with random answers:
        /// the search agrees with trying every order.
        #[test]
        fn agrees_with_trying_every_order_on_small_random_histories() {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let (mut linearizable, mut not) = (0, 0);
            for _ in 0..3000 {
                let n = 1 + rng.next(6) as usize;
                let ops: Vec<Op> = (0..n)
                    .map(|_| {
                        let call = rng.next(20);
                        let ret = (rng.next(8) > 0).then(|| call + 1 + rng.next(10));
                        let value = |rng: &mut Rng| match rng.next(4) {
                            0 => None,
                            v => Some(v as u32),
                        };
                        let (kind, out) = match rng.next(3) {
                            0 => (Kind::Write(1 + rng.next(3) as u32), Out::Written),
                            1 => (Kind::Read, Out::Value(value(&mut rng))),
                            _ => (
                                Kind::Cas {
                                    expected: value(&mut rng),
                                    new: 1 + rng.next(3) as u32,
                                },
                                Out::Swapped(rng.next(2) == 0),
                            ),
                        };
                        let out = if ret.is_none() { Out::Unknown } else { out };
                        Op {
                            call,
                            ret,
                            kind,
                            out,
                        }
                    })
                    .collect();
                let want = brute_force(&ops);
                assert_eq!(check(&ops).is_ok(), want, "{ops:?}");
                if want {
                    linearizable += 1;
                } else {
                    not += 1;
                }
            }
            assert!(linearizable > 300 && not > 300, "{linearizable} / {not}");
        }
    }
}

/// One client's view of what it did.
#[derive(Default)]
struct Recorded {
    /// (key, op)
    ops: Vec<(usize, Op)>,
    /// Default reads: (key, value, when it returned).
    default_reads: Vec<(usize, Option<u32>, u64)>,
}

const KEYS: usize = 3;
const CLIENTS: usize = 8;
const OPS_PER_CLIENT: usize = 250;

fn key_url(server: &str, key: usize) -> String {
    format!("{server}/v1/kv/lin/k{key}")
}

/// `v123` → 123.
fn parse_value(b64: &str) -> u32 {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64 value");
    let text = String::from_utf8(raw).expect("utf-8 value");
    text.strip_prefix('v')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a value no client wrote: {text:?}"))
}

/// A `?consistent` (or default) read: `Some((value, ModifyIndex))`, or
/// `None` when it failed (500, no answer).
async fn read(
    http: &reqwest::Client,
    server: &str,
    key: usize,
    consistent: bool,
) -> Option<(Option<u32>, u64)> {
    let mode = if consistent { "?consistent" } else { "" };
    let resp = http
        .get(format!("{}{mode}", key_url(server, key)))
        .send()
        .await
        .ok()?;
    match resp.status() {
        StatusCode::NOT_FOUND => Some((None, 0)),
        StatusCode::OK => {
            let v: serde_json::Value = resp.json().await.ok()?;
            let e = &v[0];
            Some((
                Some(parse_value(e["Value"].as_str().unwrap_or(""))),
                e["ModifyIndex"].as_u64().expect("ModifyIndex"),
            ))
        }
        s if s.is_server_error() => None,
        s => panic!(
            "read answered {s}: {}",
            resp.text().await.unwrap_or_default()
        ),
    }
}

/// A put (with `?cas=` when given): `Some(true|false)` as answered, `None`
/// when the outcome is unknown.
async fn write(
    http: &reqwest::Client,
    server: &str,
    key: usize,
    value: u32,
    cas: Option<u64>,
) -> Option<bool> {
    let mut url = key_url(server, key);
    if let Some(index) = cas {
        url.push_str(&format!("?cas={index}"));
    }
    let resp = http.put(url).body(format!("v{value}")).send().await.ok()?;
    let status = resp.status();
    let text = resp.text().await.ok()?;
    match status {
        StatusCode::OK => Some(text.trim() == "true"),
        s if s.is_server_error() => None,
        s => panic!("write answered {s}: {text}"),
    }
}

async fn run_client(
    id: usize,
    server: String,
    values: Arc<AtomicU32>,
    epoch: Instant,
    deadline: Instant,
) -> Recorded {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let now = || epoch.elapsed().as_nanos() as u64;
    let mut rng = 0x2545_f491_4f6c_dd1d_u64 ^ ((id as u64 + 1) << 32);
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut rec = Recorded::default();
    for _ in 0..OPS_PER_CLIENT {
        if Instant::now() > deadline {
            break;
        }
        let key = next(KEYS as u64) as usize;
        match next(10) {
            0..=2 => {
                let v = values.fetch_add(1, Ordering::Relaxed);
                let call = now();
                let out = write(&http, &server, key, v, None).await;
                let (ret, out) = match out {
                    Some(true) => (Some(now()), Out::Written),
                    Some(false) => panic!("a put without ?cas answered false"),
                    None => (None, Out::Unknown),
                };
                rec.ops.push((
                    key,
                    Op {
                        call,
                        ret,
                        kind: Kind::Write(v),
                        out,
                    },
                ));
            }
            3..=5 => {
                let call = now();
                if let Some((v, _)) = read(&http, &server, key, true).await {
                    let ret = Some(now());
                    rec.ops.push((
                        key,
                        Op {
                            call,
                            ret,
                            kind: Kind::Read,
                            out: Out::Value(v),
                        },
                    ));
                }
            }
            6..=7 => {
                let call = now();
                let Some((expected, index)) = read(&http, &server, key, true).await else {
                    continue;
                };
                let ret = Some(now());
                rec.ops.push((
                    key,
                    Op {
                        call,
                        ret,
                        kind: Kind::Read,
                        out: Out::Value(expected),
                    },
                ));
                let new = values.fetch_add(1, Ordering::Relaxed);
                let call = now();
                let out = write(&http, &server, key, new, Some(index)).await;
                let (ret, out) = match out {
                    Some(swapped) => (Some(now()), Out::Swapped(swapped)),
                    None => (None, Out::Unknown),
                };
                rec.ops.push((
                    key,
                    Op {
                        call,
                        ret,
                        kind: Kind::Cas { expected, new },
                        out,
                    },
                ));
            }
            _ => {
                if let Some((v, _)) = read(&http, &server, key, false).await {
                    rec.default_reads.push((key, v, now()));
                }
            }
        }
    }
    rec
}

/// `ops` with a read made to return what an earlier read (from the middle
/// of the history) returned, when a write acknowledged in between
/// overwrote that value.
fn with_a_stale_read(ops: &[Op]) -> Option<Vec<Op>> {
    let mut ops = ops.to_vec();
    ops.sort_by_key(|o| o.call);
    let is_read = |o: &Op| o.kind == Kind::Read && matches!(o.out, Out::Value(Some(_)));
    let early = ops.len() / 2 + ops[ops.len() / 2..].iter().position(is_read)?;
    let early_ret = ops[early].ret?;
    let overwritten = ops.iter().find(|o| {
        matches!(o.kind, Kind::Write(_)) && o.out == Out::Written && o.call > early_ret
    })?;
    let overwritten_ret = overwritten.ret?;
    let late = ops
        .iter()
        .position(|o| is_read(o) && o.call > overwritten_ret && o.out != ops[early].out)?;
    ops[late].out = ops[early].out;
    Some(ops)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_history_on_two_servers_is_linearizable_while_etcd_members_die() {
    let etcd = EtcdCluster::start(3);
    let a = etcd.start_shoal(bin(), "server-a", &[]);
    let b = etcd.start_shoal(bin(), "server-b", &[]);
    let epoch = Instant::now();
    let deadline = epoch + Duration::from_secs(40);
    let values = Arc::new(AtomicU32::new(1));
    let mut clients = tokio::task::JoinSet::new();
    for id in 0..CLIENTS {
        let server = if id % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        clients.spawn(run_client(id, server, values.clone(), epoch, deadline));
    }
    // The nemesis: one member at a time is killed, then restarted, until
    // the clients are done.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let nemesis = tokio::task::spawn_blocking({
        let stop = stop.clone();
        let mut etcd = etcd;
        move || {
            let mut kills = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(700));
                let i = kills % 3;
                etcd.kill(i);
                kills += 1;
                std::thread::sleep(Duration::from_millis(1200));
                etcd.restart(i);
                etcd.wait_healthy();
            }
            (etcd, kills)
        }
    });
    let records: Vec<Recorded> = clients.join_all().await;
    stop.store(true, Ordering::Relaxed);
    let (etcd, kills) = nemesis.await.unwrap();
    etcd.wait_healthy();
    let took = epoch.elapsed();

    let mut per_key: Vec<Vec<Op>> = vec![Vec::new(); KEYS];
    let mut default_reads = Vec::new();
    for r in records {
        for (key, op) in r.ops {
            per_key[key].push(op);
        }
        default_reads.extend(r.default_reads);
    }
    // Each server's final view, read `?consistent`, ends the history.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for server in [&a.url, &b.url] {
        for (key, ops) in per_key.iter_mut().enumerate() {
            let call = epoch.elapsed().as_nanos() as u64;
            let (v, _) = read(&http, server, key, true)
                .await
                .expect("a consistent read after the faults");
            let ret = Some(epoch.elapsed().as_nanos() as u64);
            ops.push(Op {
                call,
                ret,
                kind: Kind::Read,
                out: Out::Value(v),
            });
        }
    }
    let total: usize = per_key.iter().map(Vec::len).sum::<usize>() + default_reads.len();
    let unknown = per_key.iter().flatten().filter(|o| o.ret.is_none()).count();
    eprintln!(
        "{total} ops ({unknown} of unknown outcome, {} default reads) in {took:?}, {kills} etcd \
         members killed and restarted",
        default_reads.len()
    );
    assert!(total >= 1000, "only {total} ops in {took:?}");
    assert!(kills >= 2, "only {kills} members killed in {took:?}");
    for (key, ops) in per_key.iter().enumerate() {
        let started = Instant::now();
        if let Err(e) = checker::check(ops) {
            panic!("key {key}: {e}");
        }
        eprintln!(
            "key {key}: {} ops linearizable, checked in {:?}",
            ops.len(),
            started.elapsed()
        );
    }
    // The checker sees a stale read slipped into this very history: a read
    // made to return a value overwritten (by a write acknowledged in
    // between) before it was sent.
    let mut corrupted = 0;
    for ops in &per_key {
        if let Some(bad) = with_a_stale_read(ops) {
            let started = Instant::now();
            let err = checker::check(&bad).expect_err("a stale read was not caught");
            assert!(err.contains("not linearizable"), "{err}");
            eprintln!("a stale read caught in {:?}", started.elapsed());
            corrupted += 1;
        }
    }
    assert!(corrupted > 0, "no history had a read to corrupt");
    // A default read may be stale, but never returns a value before it
    // was sent or one nobody wrote.
    let mut sent = std::collections::HashMap::new();
    for (key, ops) in per_key.iter().enumerate() {
        for op in ops {
            match op.kind {
                Kind::Write(v) | Kind::Cas { new: v, .. } => {
                    sent.insert((key, v), op.call);
                }
                Kind::Read => {}
            }
        }
    }
    for (key, value, ret) in default_reads {
        if let Some(v) = value {
            let call = sent
                .get(&(key, v))
                .unwrap_or_else(|| panic!("key {key}: read v{v}, never written there"));
            assert!(*call < ret, "key {key}: read v{v} before it was written");
        }
    }
}
