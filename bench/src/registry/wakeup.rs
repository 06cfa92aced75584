//! Wake-up delay of blocking queries: `watchers` concurrent
//! `GET /v1/health/service/<svc>?index=<current>&wait=60s` are put in
//! flight, one instance of that service is registered, and each watcher's
//! answer is timed against the moment the write was acknowledged (and sent).

use super::raw::RawConn;
use crate::server::http_client;
use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The service the watchers block on.
pub const SERVICE: &str = "wake";
/// The blocking wait the watchers ask for.
const WAIT: &str = "60s";
/// How long a round may take at most before its watchers are abandoned.
const ROUND_LIMIT: Duration = Duration::from_secs(75);
/// How long the watchers may take to be sent at most.
const SEND_LIMIT: Duration = Duration::from_secs(20);

/// What one round measured.
#[derive(Default)]
pub struct Round {
    /// Per watcher: write acknowledged → watcher's answer received (0 if
    /// the answer arrived before the acknowledgement).
    pub from_ack: Vec<Duration>,
    /// Per watcher: write sent → watcher's answer received.
    pub from_sent: Vec<Duration>,
    /// The write's own round trip (sent → acknowledged).
    pub write: Duration,
    /// Watchers answered before the write's acknowledgement arrived.
    pub before_ack: usize,
    /// Watchers that answered before the write was even sent (spurious).
    pub early: usize,
    /// Watchers that failed or returned without a change.
    pub failed: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

/// The settings of the wake-up benchmark.
#[derive(Clone, Copy)]
pub struct Plan {
    /// Concurrent blocking queries per round.
    pub watchers: usize,
    /// Rounds.
    pub rounds: usize,
    /// Pause once every watcher was sent, before the write.
    pub settle: Duration,
}

/// Runs all rounds against the server at `base`, printing one line per round.
pub async fn run(base: &str, plan: Plan) -> Result<Vec<Round>> {
    run_across(base, base, plan).await
}

/// Like [`run`], with the writes sent to `write_base` and the watchers on
/// `watch_base` (two servers sharing one catalog).
pub async fn run_across(write_base: &str, watch_base: &str, plan: Plan) -> Result<Vec<Round>> {
    let write = http_client(Duration::from_secs(30))?;
    register(&write, write_base, 0).await?;
    let mut conns = connect_all(watch_base, plan.watchers).await?;
    let mut rounds = Vec::with_capacity(plan.rounds);
    let bases = Bases {
        write: write_base,
        watch: watch_base,
    };
    for n in 1..=plan.rounds {
        let round = one_round(&mut conns, &write, bases, plan, n).await?;
        println!("  round {n}: {}", round_line(&round));
        rounds.push(round);
    }
    Ok(rounds)
}

/// Registers instance `wake-<n>` of [`SERVICE`]; returns once durable.
async fn register(client: &reqwest::Client, base: &str, n: usize) -> Result<()> {
    let body = serde_json::json!({
        "ID": format!("{SERVICE}-{n}"), "Name": SERVICE, "Port": 9000 + n, "Address": "127.0.0.1",
    });
    let response = client
        .put(format!("{base}/v1/agent/service/register"))
        .json(&body)
        .send();
    let response = response.await.context("registering the wake-up instance")?;
    if !response.status().is_success() {
        bail!(
            "registering the wake-up instance: HTTP {}",
            response.status()
        );
    }
    Ok(())
}

/// Opens one kept-alive connection per watcher (bounded in time).
async fn connect_all(base: &str, n: usize) -> Result<Vec<RawConn>> {
    let mut conns = Vec::with_capacity(n);
    let deadline = Instant::now() + SEND_LIMIT;
    for _ in 0..n {
        if Instant::now() >= deadline {
            bail!("could not open {n} watcher connections within {SEND_LIMIT:?}");
        }
        conns.push(RawConn::connect(base).await?);
    }
    Ok(conns)
}

/// The service's current `X-Consul-Index`.
async fn current_index(client: &reqwest::Client, base: &str) -> Result<u64> {
    let url = format!("{base}/v1/health/service/{SERVICE}?consistent");
    let response = client.get(url).send().await.context("reading the index")?;
    index_of(&response).context("no X-Consul-Index on the health answer")
}

fn index_of(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get("X-Consul-Index")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Where the round writes and where its watchers wait.
#[derive(Clone, Copy)]
struct Bases<'a> {
    write: &'a str,
    watch: &'a str,
}

/// One round: watchers in flight, settle, one write, collect the answers.
async fn one_round(
    conns: &mut Vec<RawConn>,
    write: &reqwest::Client,
    bases: Bases<'_>,
    plan: Plan,
    n: usize,
) -> Result<Round> {
    // `?consistent`: on a shared catalog the watchers' server has every
    // earlier write, so no watcher returns at once on an old one.
    let index = current_index(write, bases.watch).await?;
    let path = format!("/v1/health/service/{SERVICE}?index={index}&wait={WAIT}");
    let (sent, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut set = JoinSet::new();
    for conn in conns.drain(..) {
        set.spawn(watch_once(
            conn,
            path.clone(),
            index,
            sent.clone(),
            done.clone(),
        ));
    }
    wait_until_sent(&sent, plan.watchers).await?;
    tokio::time::sleep(plan.settle).await;
    let early = done.load(Ordering::SeqCst);
    let sent_at = Instant::now();
    register(write, bases.write, n).await?;
    let acked_at = Instant::now();
    let mut round = Round {
        write: acked_at - sent_at,
        early,
        ..Round::default()
    };
    let deadline = tokio::time::Instant::now() + ROUND_LIMIT;
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, set.join_next()).await {
        match joined.map_err(|e| e.to_string()) {
            Ok((conn, Ok(at))) => {
                conns.push(conn);
                record(&mut round, at, sent_at, acked_at);
            }
            Ok((_, Err(e))) | Err(e) => fail(&mut round, e),
        }
    }
    for _ in 0..set.len() {
        fail(&mut round, format!("no answer within {ROUND_LIMIT:?}"));
    }
    if conns.len() < plan.watchers {
        bail!(
            "{} watcher connections were lost; stopping",
            plan.watchers - conns.len()
        );
    }
    Ok(round)
}

fn record(round: &mut Round, at: Instant, sent_at: Instant, acked_at: Instant) {
    if at < acked_at {
        round.before_ack += 1;
    }
    round.from_ack.push(at.saturating_duration_since(acked_at));
    round.from_sent.push(at.saturating_duration_since(sent_at));
}

fn fail(round: &mut Round, error: String) {
    round.failed += 1;
    round.first_error.get_or_insert(error);
}

/// Waits (bounded) until every watcher task has started its request.
async fn wait_until_sent(sent: &AtomicUsize, watchers: usize) -> Result<()> {
    let deadline = Instant::now() + SEND_LIMIT;
    while sent.load(Ordering::SeqCst) < watchers {
        if Instant::now() >= deadline {
            bail!(
                "only {} of {watchers} watchers started within {SEND_LIMIT:?}",
                sent.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// One watcher: the blocking query on its own connection; the instant its
/// whole answer arrived. Gives the connection back for the next round.
async fn watch_once(
    mut conn: RawConn,
    path: String,
    index: u64,
    sent: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
) -> (RawConn, Result<Instant, String>) {
    let sent_ok = conn.send(&path).await;
    sent.fetch_add(1, Ordering::SeqCst);
    if let Err(e) = sent_ok {
        done.fetch_add(1, Ordering::SeqCst);
        return (conn, Err(format!("watcher request failed: {e}")));
    }
    let answer = conn.answer().await;
    let at = Instant::now();
    done.fetch_add(1, Ordering::SeqCst);
    let result = match answer {
        Err(e) => Err(format!("watcher answer failed: {e}")),
        Ok(a) if a.status != 200 => Err(format!("watcher answered HTTP {}", a.status)),
        Ok(a) => match a.index {
            Some(i) if i > index => Ok(at),
            other => Err(format!(
                "watcher returned without a change (index {other:?}, was {index})"
            )),
        },
    };
    (conn, result)
}

fn round_line(r: &Round) -> String {
    let wake = crate::stats::Summary::of(&r.from_ack).map_or("-".into(), |s| s.line());
    let mut line = format!(
        "write {}; wake-up after ack {wake}; {} answered before the ack, {} early, {} failed",
        crate::stats::ms(r.write),
        r.before_ack,
        r.early,
        r.failed
    );
    if let Some(e) = &r.first_error {
        line.push_str(&format!(" (first: {e})"));
    }
    line
}
