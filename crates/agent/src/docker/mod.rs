//! The Docker registrator: running containers become instances (and
//! checks) on this host's node of a [`Registry`], following
//! gliderlabs/registrator's conventions (see `convention.rs`).
//!
//! At start and after every reconnect it subscribes to the daemon's event
//! stream first, then lists the running containers and reconciles (so no
//! event is lost across a reconnect: what happened while it was away is in
//! the listing, what happens during it is in the stream, and resuming the
//! stream with `since=` replays what the daemon still has). Then it
//! follows events: `start`/`unpause` register, `kill`/`stop`/`pause` drain
//! at once (a critical maintenance check, before the process exits),
//! `die` deregisters (`--deregister on-success`: only on exit code 0),
//! `destroy` deregisters, `health_status` sets the HEALTHCHECK check.
//! A daemon that is unreachable is retried with backoff, forever.

mod checks;
mod client;
mod container;
mod convention;
#[cfg(test)]
mod fuzz_tests;
mod network;

pub use client::{DockerClient, DockerError, DEFAULT_SOCKET};
pub use convention::Settings;

use convention::Planned;
use shoal_catalog::{Check, Command, Node, Registration, Registry, Service};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// First wait before reconnecting to the daemon; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between two attempts to reach the daemon.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// When a stopped container's instances leave the catalog.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Deregister {
    /// On every `die` (registrator's default).
    #[default]
    Always,
    /// Only when the container exited with code 0; otherwise it stays,
    /// drained, until it starts again or is removed.
    OnSuccess,
}

impl std::str::FromStr for Deregister {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Deregister::Always),
            "on-success" => Ok(Deregister::OnSuccess),
            _ => Err(format!("{s:?}: expected always or on-success")),
        }
    }
}

/// What the registrator watches and how it registers.
#[derive(Clone, Debug)]
pub struct DockerConfig {
    /// The daemon (`unix:///var/run/docker.sock`, `tcp://host:2375`).
    pub url: String,
    /// The node instances are registered on (this host's).
    pub node: String,
    /// Naming and addressing (registrator's `-ip`, `-internal`, `-explicit`, `-tags`).
    pub settings: Settings,
    /// Reconcile with the daemon's listing this often (`-resync`), besides
    /// at start and after each reconnect.
    pub resync: Option<Duration>,
    /// Also remove instances of this node that look like a registrator's
    /// (`<hostname>:<name>:<port>`) whose container no longer runs (`-cleanup`).
    pub cleanup: bool,
    /// `-deregister always|on-success`.
    pub deregister: Deregister,
    /// The proxy's container (name or ID): containers sharing one of its
    /// networks are registered at their address on it. Its networks are
    /// read at every sync and whenever it starts or changes networks.
    pub proxy_container: Option<String>,
}

/// Follows one Docker daemon; see the module doc.
pub struct Registrator {
    registry: Arc<Registry>,
    client: DockerClient,
    config: DockerConfig,
    /// Container ID → IDs of the instances registered for it.
    owned: BTreeMap<String, Vec<String>>,
    /// `timeNano` of the last event seen: where a new stream resumes.
    last_event: Option<i64>,
}

impl Registrator {
    /// A registrator writing to `registry`; fails only on a malformed URL.
    pub fn new(registry: Arc<Registry>, config: DockerConfig) -> Result<Self, DockerError> {
        Ok(Registrator {
            client: DockerClient::new(&config.url)?,
            registry,
            config,
            owned: BTreeMap::new(),
            last_event: None,
        })
    }

    /// Follows the daemon until `cancel`, reconnecting with backoff.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        let mut reported = false;
        while !cancel.is_cancelled() {
            let mut connected = false;
            let err = match self.session(&cancel, &mut connected).await {
                Ok(()) => return,
                Err(e) => e,
            };
            if connected {
                backoff = MIN_BACKOFF;
                reported = false;
            }
            if !reported {
                let hint = if err.permission_denied() {
                    " (permission denied: run shoal as a member of the docker group, or pass --no-docker)"
                } else {
                    ""
                };
                tracing::warn!(
                    docker = %self.client.url(),
                    error = %err,
                    "Docker registrator: daemon unreachable{hint}; retrying with backoff (up to {MAX_BACKOFF:?}), the rest of shoal keeps running"
                );
                reported = true;
            } else {
                tracing::debug!(error = %err, ?backoff, "Docker daemon still unreachable");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection's life: subscribe, sync, follow. `Ok` only when cancelled.
    async fn session(
        &mut self,
        cancel: &CancellationToken,
        connected: &mut bool,
    ) -> Result<(), DockerError> {
        self.client.ping().await?;
        let mut events = self.client.events(self.last_event).await?;
        self.sync().await?;
        *connected = true;
        tracing::info!(docker = %self.client.url(), containers = self.owned.len(), "Docker registrator: following container events");
        let period = self
            .config
            .resync
            .unwrap_or(Duration::from_secs(3600 * 24 * 365));
        let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = resync.tick(), if self.config.resync.is_some() => self.sync().await?,
                event = events.next() => match event {
                    None => return Err(DockerError::Http("the daemon closed the event stream".into(), "/events".into())),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(event)) => self.handle(event).await?,
                },
            }
        }
    }

    /// Reconciles with the daemon's listing: registers every running
    /// container, removes what no longer runs (and, with `cleanup`, this
    /// host's registrator-looking instances nobody owns).
    async fn sync(&mut self) -> Result<(), DockerError> {
        self.read_proxy_networks().await?;
        let running: BTreeSet<String> = self.client.running().await?.into_iter().collect();
        for id in &running {
            self.add(id).await?;
        }
        let gone: Vec<String> = self
            .owned
            .keys()
            .filter(|id| !running.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.remove(&id).await;
        }
        if self.config.cleanup {
            self.cleanup().await;
        }
        Ok(())
    }

    /// Reads the proxy container's networks into the settings; true when
    /// they changed. A proxy container that does not run (yet) has none.
    async fn read_proxy_networks(&mut self) -> Result<bool, DockerError> {
        let Some(proxy) = self.config.proxy_container.clone() else {
            return Ok(false);
        };
        let nets: Vec<String> = match self.client.inspect(&proxy).await? {
            Some(c) if c.state.running => c.network_settings.networks.into_keys().collect(),
            _ => Vec::new(),
        };
        let changed = nets != self.config.settings.proxy_networks;
        if changed {
            tracing::info!(proxy = %proxy, networks = ?nets, "Docker registrator: the proxy container's networks");
            self.config.settings.proxy_networks = nets;
        }
        Ok(changed)
    }

    /// Whether container `id` (or name) is the configured proxy container.
    fn is_proxy(&self, id: &str, name: Option<&String>) -> bool {
        self.config.proxy_container.as_deref().is_some_and(|p| {
            id.starts_with(p) || name.is_some_and(|n| n == p || n.trim_start_matches('/') == p)
        })
    }

    /// A container joined or left a network: re-plan it if it runs (a
    /// stopped one leaves its networks too; `die` decides about it). The
    /// proxy's own network changes re-plan everything.
    async fn network_event(&mut self, event: &container::Event) -> Result<(), DockerError> {
        let Some(cid) = event.actor.attributes.get("container").cloned() else {
            return Ok(());
        };
        if !matches!(event.action.as_str(), "connect" | "disconnect") {
            return Ok(());
        }
        if self.is_proxy(&cid, None) && self.read_proxy_networks().await? {
            return self.sync().await;
        }
        match self.client.inspect(&cid).await? {
            Some(c) if c.state.running => {
                if self.is_proxy(&c.id, Some(&c.name)) && self.read_proxy_networks().await? {
                    return self.sync().await;
                }
                self.add(&cid).await
            }
            _ => Ok(()),
        }
    }

    async fn handle(&mut self, event: container::Event) -> Result<(), DockerError> {
        if event.kind == "network" {
            self.last_event = Some(self.last_event.unwrap_or(0).max(event.time_nano));
            return self.network_event(&event).await;
        }
        if event.kind != "container" || event.actor.id.is_empty() {
            return Ok(());
        }
        if event.action == "start"
            && self.is_proxy(&event.actor.id, event.actor.attributes.get("name"))
            && self.read_proxy_networks().await?
        {
            return self.sync().await;
        }
        self.registry.metrics().docker_events.inc();
        self.last_event = Some(self.last_event.unwrap_or(0).max(event.time_nano));
        let id = event.actor.id.as_str();
        tracing::debug!(container = %container::short_id(id), action = %event.action, "Docker event");
        match event.action.as_str() {
            "start" | "unpause" => self.add(id).await?,
            "kill" if !stops(event.actor.attributes.get("signal")) => {}
            "kill" | "stop" => self.drain(id, "the container is stopping").await,
            "pause" => self.drain(id, "the container is paused").await,
            "die" => {
                let code = event.actor.attributes.get("exitCode").map(String::as_str);
                if self.config.deregister == Deregister::Always || code == Some("0") {
                    self.remove(id).await;
                } else {
                    self.drain(id, "the container exited with an error").await;
                }
            }
            "destroy" => self.remove(id).await,
            action => {
                if let Some(status) = action.strip_prefix("health_status") {
                    self.health(id, status.trim_start_matches(':').trim())
                        .await?;
                }
            }
        }
        Ok(())
    }

    fn node(&self) -> Node {
        Node {
            name: self.config.node.clone(),
            ..Default::default()
        }
    }

    async fn write(&self, cmd: Command) {
        if let Err(e) = self.registry.write(cmd).await {
            tracing::warn!(error = %e, "Docker registrator: catalog write failed");
        }
    }

    async fn register(&self, service: Option<Service>, checks: Vec<Check>) {
        let reg = Registration {
            node: self.node(),
            skip_node_update: true,
            service,
            checks,
        };
        self.write(Command::Register(Box::new(reg))).await;
    }

    /// Registers (or refreshes) a running container's instances.
    async fn add(&mut self, id: &str) -> Result<(), DockerError> {
        let Some(c) = self.client.inspect(id).await? else {
            self.remove(id).await;
            return Ok(());
        };
        if !c.state.running {
            self.remove(id).await;
            return Ok(());
        }
        let plan = convention::plan(&c, &self.config.settings);
        for note in &plan.notes {
            tracing::info!(container = %c.short_name(), "Docker registrator: {note}");
        }
        let ids: Vec<String> = plan
            .instances
            .iter()
            .map(|p| p.service.id.clone())
            .collect();
        for planned in plan.instances {
            self.apply(planned, c.state.paused).await;
        }
        let old = self
            .owned
            .insert(id.to_string(), ids.clone())
            .unwrap_or_default();
        for stale in old.into_iter().filter(|s| !ids.contains(s)) {
            self.deregister(&stale).await;
        }
        Ok(())
    }

    /// Writes what changed of one planned instance: checks already there
    /// with the same definition keep their status.
    async fn apply(&self, planned: Planned, paused: bool) {
        let snap = self.registry.snapshot();
        let node = &self.config.node;
        let sid = planned.service.id.clone();
        let old = snap.service(node, &sid);
        let same_service = old.as_deref().is_some_and(|old| {
            let mut mine = planned.service.clone();
            mine.create_index = old.create_index;
            mine.modify_index = old.modify_index;
            *old == mine
        });
        let checks: Vec<Check> = planned
            .checks
            .into_iter()
            .filter(|c| match snap.check(node, &c.check_id) {
                None => true,
                Some(old) => {
                    old.definition != c.definition
                        || old.service_id != c.service_id
                        || (c.definition.kind().is_empty()
                            && (old.status != c.status || old.output != c.output))
                }
            })
            .collect();
        if !same_service || !checks.is_empty() {
            if old.is_none() {
                tracing::info!(id = %sid, name = %planned.service.name, address = %planned.service.address, port = planned.service.port, "Docker registrator: registered");
            }
            self.register(Some(planned.service), checks).await;
        }
        let maintenance = checks::maintenance_id(&sid);
        match (paused, snap.check(node, &maintenance).is_some()) {
            (true, false) => {
                self.register(
                    None,
                    vec![checks::maintenance_check(&sid, "the container is paused")],
                )
                .await
            }
            (false, true) => {
                self.write(Command::DeregisterCheck {
                    node: node.clone(),
                    check_id: maintenance,
                })
                .await
            }
            _ => {}
        }
    }

    /// Marks a container's instances critical at once: no new requests.
    async fn drain(&self, id: &str, reason: &str) {
        let Some(sids) = self.owned.get(id) else {
            return;
        };
        let snap = self.registry.snapshot();
        let checks: Vec<Check> = sids
            .iter()
            .filter(|sid| {
                snap.check(&self.config.node, &checks::maintenance_id(sid))
                    .is_none()
            })
            .map(|sid| checks::maintenance_check(sid, reason))
            .collect();
        if !checks.is_empty() {
            tracing::info!(instances = ?sids, "Docker registrator: draining ({reason})");
            self.register(None, checks).await;
        }
    }

    async fn remove(&mut self, id: &str) {
        for sid in self.owned.remove(id).unwrap_or_default() {
            self.deregister(&sid).await;
        }
    }

    async fn deregister(&self, sid: &str) {
        if self
            .registry
            .snapshot()
            .service(&self.config.node, sid)
            .is_some()
        {
            tracing::info!(id = %sid, "Docker registrator: deregistered");
            self.write(Command::DeregisterService {
                node: self.config.node.clone(),
                service_id: sid.to_string(),
            })
            .await;
        }
    }

    /// Sets the HEALTHCHECK check of a container's instances.
    async fn health(&mut self, id: &str, status: &str) -> Result<(), DockerError> {
        let Some(sids) = self.owned.get(id).cloned() else {
            return self.add(id).await;
        };
        let new = checks::docker_health_check("", status);
        for sid in sids {
            let check_id = checks::docker_health_id(&sid);
            let snap = self.registry.snapshot();
            let current = snap.check(&self.config.node, &check_id);
            if current.is_some_and(|c| c.status != new.status || c.output != new.output) {
                self.write(Command::UpdateCheck {
                    node: self.config.node.clone(),
                    check_id,
                    status: new.status,
                    output: Some(new.output.clone()),
                })
                .await;
            }
        }
        Ok(())
    }

    /// `--cleanup`: removes this node's instances with a registrator ID of
    /// this host that no running container owns.
    async fn cleanup(&self) {
        let owned: BTreeSet<&String> = self.owned.values().flatten().collect();
        for svc in self.registry.snapshot().node_services(&self.config.node) {
            if !owned.contains(&svc.id)
                && is_registrator_id(&svc.id, &self.config.settings.hostname)
            {
                tracing::info!(id = %svc.id, "Docker registrator: dangling instance removed (--cleanup)");
                self.deregister(&svc.id).await;
            }
        }
    }
}

/// Whether `id` has the shape `<hostname>:<container-name>:<port>[:udp]`.
fn is_registrator_id(id: &str, hostname: &str) -> bool {
    let Some(rest) = id.strip_prefix(hostname).and_then(|r| r.strip_prefix(':')) else {
        return false;
    };
    let rest = rest.strip_suffix(":udp").unwrap_or(rest);
    let Some((name, port)) = rest.rsplit_once(':') else {
        return false;
    };
    let name_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    name_ok && !port.is_empty() && port.chars().all(|c| c.is_ascii_digit())
}

/// Whether a `kill` event's signal (a number, or a name) ends the
/// container: `docker kill -s HUP|USR1|USR2|WINCH` asks a process to reload
/// or rotate logs, not to stop, so it does not drain.
fn stops(signal: Option<&String>) -> bool {
    let Some(signal) = signal else { return true };
    let name = signal.trim_start_matches("SIG");
    !matches!(
        name,
        "1" | "10" | "12" | "28" | "HUP" | "USR1" | "USR2" | "WINCH"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrator_ids() {
        for (id, ours) in [
            ("h1:web-1:80", true),
            ("h1:web_1.x:53:udp", true),
            ("h2:web-1:80", false),
            ("h1:web-1", false),
            ("h1:web-1:http", false),
            ("h1:-web:80", false),
            ("web-1", false),
            ("h1x:web:80", false),
        ] {
            assert_eq!(is_registrator_id(id, "h1"), ours, "{id}");
        }
    }

    #[test]
    fn signals_that_stop() {
        for (signal, stopping) in [
            (None, true),
            (Some("15"), true),
            (Some("9"), true),
            (Some("SIGTERM"), true),
            (Some("3"), true),
            (Some("1"), false),
            (Some("SIGHUP"), false),
            (Some("USR1"), false),
            (Some("28"), false),
        ] {
            assert_eq!(
                stops(signal.map(str::to_string).as_ref()),
                stopping,
                "{signal:?}"
            );
        }
    }

    #[test]
    fn deregister_modes() {
        assert_eq!("always".parse(), Ok(Deregister::Always));
        assert_eq!("on-success".parse(), Ok(Deregister::OnSuccess));
        assert!("never".parse::<Deregister>().is_err());
    }
}

#[cfg(test)]
mod fake_daemon;
