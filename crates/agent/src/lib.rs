//! shoal's agent: what runs on every host beside the services.
//!
//! - [`CheckRunner`] runs the HTTP, TCP and TTL checks registered on one
//!   node of an in-process [`Registry`](shoal_catalog::Registry) and writes
//!   status changes (only changes) back to it; it also removes instances
//!   whose check stayed critical past `DeregisterCriticalServiceAfter`.
//! - [`AntiEntropy`] keeps a server's catalog in line with this host's
//!   local state, and keeps the host's liveness check alive there.
//! - [`reap_dead_agents`] runs on servers: a node whose agent stopped
//!   heartbeating leaves the catalog with everything on it.
//!
//! - [`docker::Registrator`] turns running Docker containers into
//!   instances and checks (gliderlabs/registrator's conventions) and
//!   drains them when they stop.
//!
//! Script checks are never run: a registration cannot make shoal execute
//! commands.
#![forbid(unsafe_code)]

mod checks;
pub mod docker;
mod error;
mod liveness;
mod sync;

pub use checks::{CheckRunner, RunnerConfig};
pub use error::{Error, Result};
pub use liveness::reap_dead_agents;
pub use sync::{AntiEntropy, SyncConfig};
