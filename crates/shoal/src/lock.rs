//! `shoal lock [-n N] PREFIX -- command`: runs a command while holding a
//! lock (leader election) or one of N slots of a semaphore, as `consul
//! lock` does, on the same keys (`PREFIX/.lock`; with `-n`, also one
//! contender key `PREFIX/<session>` per process), so it interoperates with
//! Consul's own lock and semaphore clients.
//!
//! The lock belongs to a session with a TTL that this process renews every
//! TTL/2. When the process dies without a word (SIGKILL, a lost machine)
//! the server invalidates the session once the TTL has passed twice
//! (Consul's grace), then the key refuses new holders for the lock-delay.
//! The defaults — TTL 10 s (the shortest a server accepts) and lock-delay
//! 1 s — put a waiter in charge at most ~21 s (plus the server's 100 ms
//! expiry tick and the waiter's 250 ms retry) after its predecessor died.
//! The command runs under a guard process (`lock_child.rs`) that ends it
//! when this process dies, even by SIGKILL, so a dead holder's command is
//! gone within the guard's 5 s grace, long before the lock can pass on.
//! The command is sent SIGTERM when the lock is lost, when no renewal has
//! gone through for a whole TTL (the server would end the session at 2 ×
//! TTL), and when this process is told to stop; its exit code becomes
//! this process's. It sees `CONSUL_LOCK_HELD=true`, as under `consul lock`.

use crate::client::Registry;
use crate::coord_client::CoordClient;
use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

/// Flags of `shoal lock`.
#[derive(clap::Args, Debug)]
pub struct LockArgs {
    /// How many holders at once (1: a lock; more: a semaphore).
    #[arg(short = 'n', long = "limit", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// TTL of the session; renewed every TTL/2 (10s..24h).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    ttl: Duration,
    /// How long a lock lost by a dead holder stays unavailable.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    lock_delay: Duration,
    /// Name of the session.
    #[arg(long, default_value = "shoal lock")]
    name: String,
    /// KV prefix the lock lives under.
    prefix: String,
    /// The command: one argument runs through `sh -c`, several are run as given.
    #[arg(last = true, required = true)]
    command: Vec<String>,
    #[command(flatten)]
    registry: Registry,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    shoal_catalog::duration::parse(s)
}

/// How long one blocking read of the lock's keys waits.
const WATCH_WAIT: Duration = Duration::from_secs(30);
/// Pause before trying a key that is free but refused (its lock-delay).
const RETRY: Duration = Duration::from_millis(250);

/// What `shoal lock` holds: one lock key, or a semaphore slot.
struct Lock {
    client: Arc<CoordClient>,
    session: String,
    prefix: String,
    limit: u32,
}

impl Lock {
    fn lock_key(&self) -> String {
        format!("{}/.lock", self.prefix)
    }

    fn contender_key(&self) -> String {
        format!("{}/{}", self.prefix, self.session)
    }

    /// Blocks until held.
    async fn acquire(&self) -> anyhow::Result<()> {
        if self.limit == 1 {
            return self.acquire_lock().await;
        }
        let contender = self.contender_key();
        if !self
            .client
            .kv_lock(&contender, Bytes::new(), &self.session, true, None, None)
            .await?
        {
            bail!("cannot claim the contender key {contender}");
        }
        let mut index = 0;
        loop {
            let (next, entries) = self
                .client
                .kv_read(&format!("{}/", self.prefix), true, index, WATCH_WAIT)
                .await?;
            if self.try_take_slot(&entries).await? {
                return Ok(());
            }
            index = shoal_catalog::blocking::next_index(index, next);
        }
    }

    async fn acquire_lock(&self) -> anyhow::Result<()> {
        let key = self.lock_key();
        let mut index = 0;
        loop {
            let value = Bytes::new();
            if self
                .client
                .kv_lock(&key, value, &self.session, true, None, None)
                .await?
            {
                return Ok(());
            }
            let (next, entries) = self.client.kv_read(&key, false, index, WATCH_WAIT).await?;
            let free = entries.first().is_none_or(|e| e.session.is_empty());
            if free {
                // Free but refused: the key is in its lock-delay, which no
                // write ends, so a blocking read from here would wait for
                // nothing. Try again after a pause, as Consul's client does.
                tokio::time::sleep(RETRY).await;
                index = 0;
                continue;
            }
            index = shoal_catalog::blocking::next_index(index, next);
        }
    }

    /// One semaphore round: prune dead holders, join if there is room.
    async fn try_take_slot(&self, entries: &[shoal_catalog::KvEntry]) -> anyhow::Result<bool> {
        let lock_key = self.lock_key();
        let lock = entries.iter().find(|e| e.key == lock_key);
        let (limit, mut holders) = match lock {
            Some(e) => parse_semaphore(&e.value)?,
            None => (self.limit, BTreeMap::new()),
        };
        if limit != self.limit {
            bail!(
                "semaphore limit conflict (lock: {limit}, local: {})",
                self.limit
            );
        }
        let live: Vec<&str> = entries
            .iter()
            .filter(|e| e.key != lock_key && !e.session.is_empty())
            .map(|e| e.session.as_str())
            .collect();
        holders.retain(|h, _| live.contains(&h.as_str()));
        if holders.contains_key(&self.session) {
            return Ok(true);
        }
        if holders.len() >= limit as usize {
            return Ok(false);
        }
        holders.insert(self.session.clone(), true);
        let body = json!({"Limit": limit, "Holders": holders});
        let cas = lock.map_or(0, |e| e.modify_index);
        let value = Bytes::from(serde_json::to_vec(&body)?);
        self.client.kv_cas(&lock_key, value, cas).await
    }

    /// Returns when the lock (or slot) is no longer ours.
    async fn watch_lost(&self) -> anyhow::Result<()> {
        let mut index = 0;
        loop {
            let (next, entries) = if self.limit == 1 {
                self.client
                    .kv_read(&self.lock_key(), false, index, WATCH_WAIT)
                    .await?
            } else {
                self.client
                    .kv_read(&format!("{}/", self.prefix), true, index, WATCH_WAIT)
                    .await?
            };
            if !self.still_held(&entries) {
                return Ok(());
            }
            index = shoal_catalog::blocking::next_index(index, next);
        }
    }

    fn still_held(&self, entries: &[shoal_catalog::KvEntry]) -> bool {
        if self.limit == 1 {
            return entries
                .iter()
                .any(|e| e.key == self.lock_key() && e.session == self.session);
        }
        let contender = entries
            .iter()
            .any(|e| e.key == self.contender_key() && e.session == self.session);
        let listed = entries
            .iter()
            .find(|e| e.key == self.lock_key())
            .and_then(|e| parse_semaphore(&e.value).ok())
            .is_some_and(|(_, h)| h.contains_key(&self.session));
        contender && listed
    }

    /// Gives the lock (or slot) back; best effort, the session goes next.
    async fn release(&self) -> anyhow::Result<()> {
        if self.limit == 1 {
            self.client
                .kv_lock(
                    &self.lock_key(),
                    Bytes::new(),
                    &self.session,
                    false,
                    None,
                    None,
                )
                .await?;
            return Ok(());
        }
        for _ in 0..10 {
            let (_, entries) = self
                .client
                .kv_read(&self.lock_key(), false, 0, WATCH_WAIT)
                .await?;
            let Some(e) = entries.first() else { break };
            let (limit, mut holders) = parse_semaphore(&e.value)?;
            if holders.remove(&self.session).is_none() {
                break;
            }
            let body = Bytes::from(serde_json::to_vec(
                &json!({"Limit": limit, "Holders": holders}),
            )?);
            if self
                .client
                .kv_cas(&self.lock_key(), body, e.modify_index)
                .await?
            {
                break;
            }
        }
        self.client.kv_delete(&self.contender_key()).await
    }
}

/// A semaphore's `.lock` value: `{"Limit": N, "Holders": {session: true}}`.
fn parse_semaphore(value: &[u8]) -> anyhow::Result<(u32, BTreeMap<String, bool>)> {
    let v: Value = serde_json::from_slice(value).context("semaphore lock value is not JSON")?;
    let limit = v["Limit"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .context("semaphore lock value has no Limit")?;
    let holders = match &v["Holders"] {
        Value::Object(m) => m.keys().map(|k| (k.clone(), true)).collect(),
        _ => BTreeMap::new(),
    };
    Ok((limit, holders))
}

/// Renews the session every TTL/2 until it is gone; then wakes `lost`.
/// The server ends the session 2 × TTL after the last renewal it saw, so
/// when no renewal has gone through for a whole TTL (the server is
/// unreachable) the lock is given up here first: the command is stopped
/// before anyone else can be granted the lock.
async fn keep_renewing(
    client: Arc<CoordClient>,
    session: String,
    ttl: Duration,
    lost: Arc<Notify>,
) {
    let mut tick = tokio::time::interval(ttl / 2);
    tick.tick().await;
    let mut renewed = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        // Never wait on a renewal past the moment to give up.
        let left = ttl.saturating_sub(renewed.elapsed()).min(ttl / 2);
        match tokio::time::timeout(left, client.session_renew(&session)).await {
            Ok(Ok(true)) => renewed = tokio::time::Instant::now(),
            Ok(Ok(false)) => {
                tracing::warn!(%session, "session is gone");
                lost.notify_one();
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(%session, error = %e, "cannot renew the session; retrying")
            }
            Err(_) => tracing::warn!(%session, "renewing the session timed out; retrying"),
        }
        if renewed.elapsed() >= ttl {
            tracing::warn!(%session, "no renewal for a whole TTL; giving the lock up");
            lost.notify_one();
            return;
        }
    }
}

/// Starts the command under a `shoal lock-child` guard (see
/// `lock_child.rs`: the command dies with this process, even by SIGKILL).
fn spawn_child(command: &[String]) -> anyhow::Result<Child> {
    let me = std::env::current_exe().context("cannot find the shoal binary")?;
    Command::new(me)
        .arg("lock-child")
        .arg("--parent")
        .arg(std::process::id().to_string())
        .arg("--")
        .args(command)
        .spawn()
        .with_context(|| format!("cannot run {command:?}"))
}

/// SIGTERM to the guard, which ends the command's process group (SIGKILL
/// after its grace); then the exit code once it ends.
async fn stop_child(child: &mut Child) -> i32 {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let patience = crate::lock_child::GRACE + Duration::from_secs(5);
    match tokio::time::timeout(patience, child.wait()).await {
        Ok(Ok(status)) => status.code().unwrap_or(1),
        _ => {
            let _ = child.kill().await;
            1
        }
    }
}

/// Runs `shoal lock`.
pub async fn run(args: LockArgs) -> anyhow::Result<()> {
    shoal_catalog::session::validate_ttl(&shoal_catalog::duration::format(args.ttl))
        .map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    let client = Arc::new(args.registry.coord()?);
    let spec = json!({
        "Name": args.name,
        "TTL": shoal_catalog::duration::format(args.ttl),
        "LockDelay": shoal_catalog::duration::format(args.lock_delay),
        "Behavior": "release",
    });
    let session = client.session_create(&spec).await?;
    let lost = Arc::new(Notify::new());
    let renewer = tokio::spawn(keep_renewing(
        client.clone(),
        session.clone(),
        args.ttl,
        lost.clone(),
    ));
    let lock = Lock {
        client: client.clone(),
        session: session.clone(),
        prefix: args.prefix.trim_end_matches('/').to_string(),
        limit: args.limit,
    };
    let result = hold_and_run(&lock, &args.command, &lost).await;
    renewer.abort();
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "cannot release the lock; the session's end will");
    }
    if let Err(e) = client.session_destroy(&session).await {
        tracing::warn!(error = %e, "cannot destroy the session; its TTL will end it");
    }
    match result? {
        0 => Ok(()),
        code => std::process::exit(code),
    }
}

/// Acquires, runs the child while held; returns the exit code.
async fn hold_and_run(lock: &Lock, command: &[String], lost: &Notify) -> anyhow::Result<i32> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        r = lock.acquire() => r?,
        _ = term.recv() => return Ok(143),
        _ = int.recv() => return Ok(130),
        _ = lost.notified() => bail!("the session ended before the lock was acquired"),
    }
    tracing::info!(prefix = %lock.prefix, "lock acquired; running the command");
    let mut child = spawn_child(command)?;
    let code = tokio::select! {
        status = child.wait() => status.context("waiting for the command")?.code().unwrap_or(1),
        r = lock.watch_lost() => {
            if let Err(e) = r {
                tracing::warn!(error = %e, "cannot watch the lock");
            }
            tracing::warn!("lock lost; stopping the command");
            stop_child(&mut child).await;
            1
        }
        _ = lost.notified() => {
            tracing::warn!("session lost; stopping the command");
            stop_child(&mut child).await;
            1
        }
        _ = term.recv() => stop_child(&mut child).await,
        _ = int.recv() => stop_child(&mut child).await,
    };
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semaphore_values_parse_like_consul_writes_them() {
        let (limit, holders) =
            parse_semaphore(br#"{"Limit":3,"Holders":{"a":true,"b":true}}"#).unwrap();
        assert_eq!(limit, 3);
        assert_eq!(holders.keys().collect::<Vec<_>>(), vec!["a", "b"]);
        assert!(parse_semaphore(b"nope").is_err());
        assert!(parse_semaphore(br#"{"Holders":{}}"#).is_err());
    }
}
