//! `/v1/event/fire/:name` and `/v1/event/list`: Consul's user events. In
//! Consul they travel by gossip and each agent keeps the last 256 it
//! accepted (those whose node, service and tag filters match it); shoal's
//! server is the one agent of its node, so it keeps them the same way, in
//! memory, and answers blocking lists on them.

use crate::error::{ApiError, ApiResult};
use crate::request::{read_body, Ctx};
use crate::response::json;
use crate::session_routes::new_uuid;
use crate::ApiState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;
use base64::Engine;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::watch;

/// Events an agent remembers (Consul's `userEventHistory`).
const HISTORY: usize = 256;
/// Largest event (name, payload and filters), as Consul's limit.
const SIZE_LIMIT: usize = 512;

/// One user event as Consul shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Event {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    /// Base64 in JSON, null when empty.
    payload: Option<String>,
    node_filter: String,
    service_filter: String,
    tag_filter: String,
    version: u32,
    /// Lamport time: here, the event's position since start.
    #[serde(rename = "LTime")]
    ltime: u64,
}

/// The events this agent accepted, newest last.
#[derive(Debug)]
pub struct EventLog {
    events: Mutex<VecDeque<Event>>,
    /// The last event's `LTime`; also the list's index.
    last: watch::Sender<u64>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            events: Mutex::new(VecDeque::new()),
            last: watch::Sender::new(0),
        }
    }
}

impl EventLog {
    fn push(&self, mut event: Event) -> Event {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        event.ltime = *self.last.borrow() + 1;
        if events.len() == HISTORY {
            events.pop_front();
        }
        events.push_back(event.clone());
        self.last.send_replace(event.ltime);
        event
    }

    fn list(&self, name: Option<&str>) -> (u64, Vec<Event>) {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let list = events
            .iter()
            .filter(|e| name.is_none_or(|n| n.is_empty() || e.name == n))
            .cloned()
            .collect();
        ((*self.last.borrow()).max(1), list)
    }
}

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/event/fire/{name}", put(fire))
        .route("/v1/event/fire/", put(missing_name))
        .route("/v1/event/list", get(list))
}

async fn missing_name() -> ApiError {
    ApiError::bad_request("Missing name")
}

fn compile(what: &str, pattern: &str) -> ApiResult<Option<regex::Regex>> {
    if pattern.is_empty() {
        return Ok(None);
    }
    regex::Regex::new(pattern)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("Invalid {what} filter {pattern:?}: {e}")))
}

/// Whether this agent accepts `e` (Consul's `shouldProcessUserEvent`).
fn accepted(api: &ApiState, e: &Event) -> ApiResult<bool> {
    let node = &api.config.node_name;
    if let Some(re) = compile("node", &e.node_filter)? {
        if !re.is_match(node) {
            return Ok(false);
        }
    }
    let Some(service_re) = compile("service", &e.service_filter)? else {
        return Ok(true);
    };
    let tag_re = compile("tag", &e.tag_filter)?;
    let services = api.registry.snapshot().node_services(node);
    Ok(services.iter().any(|s| {
        service_re.is_match(&s.name)
            && tag_re
                .as_ref()
                .is_none_or(|t| s.tags.iter().any(|tag| t.is_match(tag)))
    }))
}

async fn fire(
    State(api): State<ApiState>,
    Path(name): Path<String>,
    ctx: Ctx,
    body: Body,
) -> ApiResult<Response> {
    let payload = read_body(body, SIZE_LIMIT + 1, |max| {
        format!("Request body too large, max size: {max} bytes")
    })
    .await?;
    ctx.acl
        .need_write(shoal_catalog::acl::Resource::Event, &name)?;
    let param = |k: &str| ctx.params.get(k).unwrap_or("").to_string();
    let (node_filter, service_filter, tag_filter) = (param("node"), param("service"), param("tag"));
    if !tag_filter.is_empty() && service_filter.is_empty() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot provide tag filter without service filter",
        ));
    }
    let size =
        name.len() + payload.len() + node_filter.len() + service_filter.len() + tag_filter.len();
    if size > SIZE_LIMIT {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("user event exceeds limit of {SIZE_LIMIT} bytes"),
        ));
    }
    let event = Event {
        id: new_uuid(),
        name,
        payload: (!payload.is_empty())
            .then(|| base64::engine::general_purpose::STANDARD.encode(&payload)),
        node_filter,
        service_filter,
        tag_filter,
        version: 1,
        ltime: 0,
    };
    let event = if accepted(&api, &event)? {
        api.events.push(event)
    } else {
        event
    };
    Ok(json(None, ctx.pretty, &event))
}

async fn list(State(api): State<ApiState>, ctx: Ctx) -> Response {
    let name = ctx.params.get("name");
    let mut rx = api.events.last.subscribe();
    if ctx.q.index > 0 {
        let deadline = tokio::time::Instant::now() + shoal_catalog::blocking_wait(ctx.q.wait);
        while *rx.borrow_and_update() <= ctx.q.index {
            let woke = tokio::time::timeout_at(deadline, rx.changed()).await;
            if !matches!(woke, Ok(Ok(()))) {
                break;
            }
        }
    }
    let (index, mut events) = api.events.list(name);
    let before = events.len();
    events.retain(|e| {
        ctx.acl
            .can_read(shoal_catalog::acl::Resource::Event, &e.name)
    });
    let cut = ctx.acl.enforced && events.len() < before;
    crate::response::filtered(json(Some(index), ctx.pretty, &events), cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> Event {
        Event {
            id: new_uuid(),
            name: name.into(),
            payload: None,
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: 1,
            ltime: 0,
        }
    }

    #[test]
    fn log_keeps_the_last_events_and_filters_by_name() {
        let log = EventLog::default();
        for i in 0..(HISTORY + 10) {
            log.push(event(if i % 2 == 0 { "even" } else { "odd" }));
        }
        let (index, all) = log.list(None);
        assert_eq!(index, (HISTORY + 10) as u64);
        assert_eq!(all.len(), HISTORY);
        assert_eq!(all[0].ltime, 11);
        let (_, odd) = log.list(Some("odd"));
        assert!(odd.iter().all(|e| e.name == "odd") && odd.len() == HISTORY / 2);
    }
}
