//! Request bodies as clients send them, decoded after key normalization
//! (see [`crate::request::decode_json`]): every field name here is the
//! lowercase, underscore-free form of Consul's, and null means "unset" as
//! in Go. Conversions turn them into catalog model types, refusing what
//! shoal will not do (script checks) with a clear message.

use crate::error::{ApiError, ApiResult};
use serde::{Deserialize, Deserializer};
use shoal_catalog::duration::opt_serde;
use shoal_catalog::{Check, CheckDefinition, HealthStatus, Node, Service, Weights};
use std::collections::BTreeMap;
use std::mem::take;
use std::time::Duration;

fn null_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `Weights` as sent.
#[derive(Deserialize, Debug, Clone, Copy)]
pub struct WeightsIn {
    #[serde(default = "one")]
    passing: i32,
    #[serde(default = "one")]
    warning: i32,
}

fn one() -> i32 {
    1
}

impl WeightsIn {
    fn into_weights(self) -> ApiResult<Weights> {
        if self.passing < 1 || self.warning < 0 {
            return Err(ApiError::bad_request(
                "Passing must be greater than 0 and Warning must not be negative in Weights",
            ));
        }
        Ok(Weights {
            passing: self.passing,
            warning: self.warning,
        })
    }
}

fn weights(w: Option<WeightsIn>) -> ApiResult<Weights> {
    w.map_or(Ok(Weights::default()), WeightsIn::into_weights)
}

/// A service as sent: an agent service definition
/// (`/v1/agent/service/register`, name in `Name`) or the `Service` of a
/// catalog registration (name in `Service`, no checks).
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct ServiceDefinition {
    #[serde(deserialize_with = "null_default")]
    id: String,
    #[serde(alias = "service", deserialize_with = "null_default")]
    name: String,
    #[serde(deserialize_with = "null_default")]
    tags: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    address: String,
    #[serde(deserialize_with = "null_default")]
    meta: BTreeMap<String, String>,
    port: u16,
    #[serde(rename = "taggedaddresses", deserialize_with = "null_default")]
    tagged_addresses: BTreeMap<String, shoal_catalog::ServiceAddress>,
    weights: Option<WeightsIn>,
    #[serde(rename = "enabletagoverride")]
    enable_tag_override: bool,
    #[serde(deserialize_with = "null_default")]
    kind: String,
    check: Option<CheckTypeIn>,
    #[serde(deserialize_with = "null_default")]
    checks: Vec<CheckTypeIn>,
}

impl ServiceDefinition {
    /// The instance alone, validated (`id` defaults to the name).
    fn service(&self) -> ApiResult<Service> {
        if self.name.is_empty() {
            return Err(ApiError::bad_request("Missing service name"));
        }
        if !self.kind.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Service kind {:?} is not supported: shoal registers plain services only",
                self.kind
            )));
        }
        Ok(Service {
            id: if self.id.is_empty() {
                self.name.clone()
            } else {
                self.id.clone()
            },
            name: self.name.clone(),
            tags: self.tags.clone(),
            address: self.address.clone(),
            meta: self.meta.clone(),
            port: self.port,
            tagged_addresses: self.tagged_addresses.clone(),
            weights: weights(self.weights)?,
            enable_tag_override: self.enable_tag_override,
            ..Default::default()
        })
    }

    /// The instance and its checks, validated.
    pub fn into_parts(self) -> ApiResult<(Service, Vec<Check>)> {
        let service = self.service()?;
        let id = service.id.clone();
        let defs: Vec<CheckTypeIn> = self.check.into_iter().chain(self.checks).collect();
        let many = defs.len() > 1;
        let mut checks = Vec::with_capacity(defs.len());
        for (i, def) in defs.into_iter().enumerate() {
            // Consul's naming of a service's checks.
            let default_id = if many {
                format!("service:{id}:{}", i + 1)
            } else {
                format!("service:{id}")
            };
            let default_name = format!("Service '{}' check", service.name);
            let mut check = def.into_check(default_id, default_name)?;
            check.service_id = id.clone();
            checks.push(check);
        }
        Ok((service, checks))
    }
}

/// A check definition as agents take it, inline in a service or on its own
/// (`/v1/agent/check/register`).
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct CheckTypeIn {
    #[serde(rename = "checkid", deserialize_with = "null_default")]
    check_id: String,
    #[serde(deserialize_with = "null_default")]
    id: String,
    #[serde(deserialize_with = "null_default")]
    name: String,
    #[serde(deserialize_with = "null_default")]
    status: String,
    #[serde(deserialize_with = "null_default")]
    notes: String,
    #[serde(rename = "serviceid", deserialize_with = "null_default")]
    service_id: String,
    #[serde(deserialize_with = "null_default")]
    http: String,
    #[serde(deserialize_with = "null_default")]
    method: String,
    #[serde(deserialize_with = "null_default")]
    header: BTreeMap<String, Vec<String>>,
    #[serde(deserialize_with = "null_default")]
    body: String,
    #[serde(rename = "tlsskipverify")]
    tls_skip_verify: bool,
    #[serde(deserialize_with = "null_default")]
    tcp: String,
    #[serde(with = "opt_serde")]
    ttl: Option<Duration>,
    #[serde(with = "opt_serde")]
    interval: Option<Duration>,
    #[serde(with = "opt_serde")]
    timeout: Option<Duration>,
    #[serde(rename = "deregistercriticalserviceafter", with = "opt_serde")]
    deregister_after: Option<Duration>,
    #[serde(rename = "successbeforepassing")]
    success_before_passing: u32,
    #[serde(rename = "failuresbeforewarning")]
    failures_before_warning: u32,
    #[serde(rename = "failuresbeforecritical")]
    failures_before_critical: u32,
    /// Kinds of check shoal does not run; present only to refuse them.
    #[serde(flatten)]
    unsupported: BTreeMap<String, serde_json::Value>,
}

/// Check kinds refused outright, with why.
const REFUSED: &[(&str, &str)] = &[
    ("args", "Script checks (Args) are not supported: shoal never runs commands for a registration"),
    ("scriptargs", "Script checks (ScriptArgs) are not supported: shoal never runs commands for a registration"),
    ("script", "Script checks (Script) are not supported: shoal never runs commands for a registration"),
    ("dockercontainerid", "Docker exec checks (DockerContainerID) are not supported: shoal never runs commands for a registration"),
    ("grpc", "gRPC checks are not supported yet; use an HTTP, TCP or TTL check"),
    ("h2ping", "H2PING checks are not supported yet; use an HTTP, TCP or TTL check"),
    ("udp", "UDP checks are not supported yet; use an HTTP, TCP or TTL check"),
    ("osservice", "OSService checks are not supported"),
    ("aliasservice", "Alias checks are not supported yet"),
    ("aliasnode", "Alias checks are not supported yet"),
];

impl CheckTypeIn {
    /// The service this check names (for `/v1/agent/check/register`).
    pub fn service_id(&self) -> &str {
        &self.service_id
    }

    /// Validates and converts; `default_id`/`default_name` apply when the
    /// definition has none.
    pub fn into_check(mut self, default_id: String, default_name: String) -> ApiResult<Check> {
        let check_id = [take(&mut self.check_id), take(&mut self.id)]
            .into_iter()
            .find(|s| !s.is_empty());
        let name = take(&mut self.name);
        let status = parse_status(&self.status)?;
        let notes = take(&mut self.notes);
        let definition = self.into_definition()?;
        match definition.kind() {
            "http" | "tcp" if definition.interval.is_none_or(|i| i.is_zero()) => {
                return Err(ApiError::bad_request("Interval must be > 0 for HTTP or TCP checks"))
            }
            "http" if !(definition.http.starts_with("http://") || definition.http.starts_with("https://")) => {
                return Err(ApiError::bad_request(format!("Invalid HTTP check URL {:?}", definition.http)))
            }
            "" => {
                return Err(ApiError::bad_request(
                    "Invalid check: one of HTTP (with Interval), TCP (with Interval) or TTL is required",
                ))
            }
            _ => {}
        }
        Ok(Check {
            check_id: check_id.unwrap_or(default_id),
            name: if name.is_empty() { default_name } else { name },
            status,
            notes,
            definition,
            ..Default::default()
        })
    }
}

fn is_set(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => false,
        serde_json::Value::String(s) => !s.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Bool(b) => *b,
        _ => true,
    }
}

/// A check status as sent: empty is critical, as in Consul.
pub fn parse_status(s: &str) -> ApiResult<HealthStatus> {
    if s.is_empty() {
        return Ok(HealthStatus::Critical);
    }
    HealthStatus::parse(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid check status {s:?}: must be passing, warning or critical"
        ))
    })
}

/// `/v1/catalog/register` body.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct CatalogRegisterIn {
    #[serde(deserialize_with = "null_default")]
    id: String,
    #[serde(deserialize_with = "null_default")]
    node: String,
    #[serde(deserialize_with = "null_default")]
    address: String,
    #[serde(deserialize_with = "null_default")]
    datacenter: String,
    #[serde(rename = "taggedaddresses", deserialize_with = "null_default")]
    tagged_addresses: BTreeMap<String, String>,
    #[serde(rename = "nodemeta", deserialize_with = "null_default")]
    node_meta: BTreeMap<String, String>,
    service: Option<ServiceDefinition>,
    check: Option<HealthCheckIn>,
    #[serde(deserialize_with = "null_default")]
    checks: Vec<HealthCheckIn>,
    #[serde(rename = "skipnodeupdate")]
    skip_node_update: bool,
}

/// A check in a catalog registration: the stored form, with `Definition`.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct HealthCheckIn {
    #[serde(rename = "checkid", deserialize_with = "null_default")]
    check_id: String,
    #[serde(deserialize_with = "null_default")]
    name: String,
    #[serde(deserialize_with = "null_default")]
    status: String,
    #[serde(deserialize_with = "null_default")]
    notes: String,
    #[serde(deserialize_with = "null_default")]
    output: String,
    #[serde(rename = "serviceid", deserialize_with = "null_default")]
    service_id: String,
    definition: Option<CheckTypeIn>,
}

/// A validated catalog registration.
pub struct CatalogRegistration {
    /// The node.
    pub node: Node,
    /// Keep an existing node as it is.
    pub skip_node_update: bool,
    /// The instance, if any.
    pub service: Option<Service>,
    /// The checks.
    pub checks: Vec<Check>,
}

impl CatalogRegisterIn {
    /// Validates and converts; `datacenter` fills an empty one.
    pub fn into_registration(self, datacenter: &str) -> ApiResult<CatalogRegistration> {
        if self.node.is_empty() {
            return Err(ApiError::bad_request("Must provide node"));
        }
        if self.address.is_empty() && !self.skip_node_update {
            return Err(ApiError::bad_request("Must provide address"));
        }
        if self.service.as_ref().is_some_and(|s| s.name.is_empty()) {
            // Consul's wording on this endpoint.
            return Err(ApiError::bad_request("Must provide service name"));
        }
        let service = self
            .service
            .as_ref()
            .map(ServiceDefinition::service)
            .transpose()?;
        let mut checks = Vec::new();
        for c in self.check.into_iter().chain(self.checks) {
            let definition = match c.definition {
                Some(def) => def.into_definition()?,
                None => CheckDefinition::default(),
            };
            checks.push(Check {
                check_id: if c.check_id.is_empty() {
                    c.name.clone()
                } else {
                    c.check_id
                },
                name: c.name,
                status: parse_status(&c.status)?,
                notes: c.notes,
                output: c.output,
                service_id: c.service_id,
                definition,
                ..Default::default()
            });
        }
        let node = Node {
            id: self.id,
            name: self.node,
            address: self.address,
            datacenter: if self.datacenter.is_empty() {
                datacenter.to_string()
            } else {
                self.datacenter
            },
            tagged_addresses: self.tagged_addresses,
            meta: self.node_meta,
            ..Default::default()
        };
        Ok(CatalogRegistration {
            node,
            skip_node_update: self.skip_node_update,
            service,
            checks,
        })
    }
}

impl CheckTypeIn {
    /// The definition alone, for catalog registrations (no interval rule:
    /// the catalog only stores what an external agent runs).
    fn into_definition(self) -> ApiResult<CheckDefinition> {
        for (key, why) in REFUSED {
            if self.unsupported.get(*key).is_some_and(is_set) {
                return Err(ApiError::bad_request(*why));
            }
        }
        Ok(CheckDefinition {
            http: self.http,
            method: self.method,
            header: self.header,
            body: self.body,
            tls_skip_verify: self.tls_skip_verify,
            tcp: self.tcp,
            ttl: self.ttl,
            interval: self.interval,
            timeout: self.timeout,
            deregister_critical_service_after: self.deregister_after,
            success_before_passing: self.success_before_passing,
            failures_before_warning: self.failures_before_warning,
            failures_before_critical: self.failures_before_critical,
        })
    }
}

/// `/v1/catalog/deregister` body.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct CatalogDeregisterIn {
    #[serde(deserialize_with = "null_default")]
    pub node: String,
    #[serde(rename = "serviceid", deserialize_with = "null_default")]
    pub service_id: String,
    #[serde(rename = "checkid", deserialize_with = "null_default")]
    pub check_id: String,
}

/// `/v1/agent/check/update/:id` body.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct CheckUpdateIn {
    #[serde(deserialize_with = "null_default")]
    pub status: String,
    #[serde(deserialize_with = "null_default")]
    pub output: String,
}
