//! `shoal hello`: a tiny demo backend that says which instance answered
//! (like tutum/hello-world), with the knobs that tests and demos of a load
//! balancer need: a health switch, slow answers, chosen status codes, a
//! streaming echo and a WebSocket echo. With `--register` it registers
//! itself with a registry and deregisters on SIGINT/SIGTERM.

use crate::listen::{self, ListenAddr};
use anyhow::Context;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::Router;
use serde_json::{json, Map, Value};
use shoal_api::{RemoteCatalog, RemoteConfig};
use std::future::IntoFuture;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// The longest `/delay/{ms}` waits; also how long in-flight requests get
/// to finish once shutdown starts.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Flags of `shoal hello`.
#[derive(clap::Args, Debug, Clone)]
pub struct HelloArgs {
    /// Port to listen on (0: any free port; the line on stdout says which).
    #[arg(long, env = "SHOAL_HELLO_PORT", default_value_t = 0)]
    port: u16,
    /// Address to listen on (IP or host name; every address a name
    /// resolves to is bound).
    #[arg(long, env = "SHOAL_HELLO_ADDR", default_value_t = crate::container::default_listen_ip().to_string(), value_parser = parse_host)]
    addr: String,
    /// Service name, reported and registered.
    #[arg(long, env = "SHOAL_HELLO_NAME", default_value = "hello")]
    name: String,
    /// Instance ID (default: NAME-PORT).
    #[arg(long, env = "SHOAL_HELLO_ID")]
    id: Option<String>,
    /// Register with the registry at this URL; deregister on exit.
    #[arg(long, env = "SHOAL_HELLO_REGISTER")]
    register: Option<String>,
    /// Tag to register with (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Make /health unhealthy after this many requests to it.
    #[arg(long, env = "SHOAL_HELLO_FAIL_AFTER")]
    fail_after: Option<u64>,
    /// What `/upstream` calls (GET), e.g. another service through a proxy
    /// route: this instance as a client of another service.
    #[arg(long, env = "SHOAL_HELLO_UPSTREAM")]
    upstream: Option<String>,
    /// On SIGTERM/SIGINT, go on answering for this long (with `/health`
    /// failing) before closing, so a load balancer that learns of the
    /// stop by re-reading its configuration (HAProxy or nginx fed by
    /// `shoal render`) drops the instance before it stops answering.
    /// A second signal ends the wait. 0: close at once.
    #[arg(long, env = "SHOAL_HELLO_DRAIN", default_value = "0s", value_parser = parse_drain)]
    drain: Duration,
}

/// The longest `--drain`.
const MAX_DRAIN: Duration = Duration::from_secs(300);

fn parse_drain(s: &str) -> Result<Duration, String> {
    let d = shoal_catalog::duration::parse(s)?;
    if d > MAX_DRAIN {
        return Err(format!("at most {}s", MAX_DRAIN.as_secs()));
    }
    Ok(d)
}

/// Who this instance is and what it has counted; shared by every handler.
struct Instance {
    id: String,
    name: String,
    hostname: String,
    /// The address actually bound (the real port when asked for port 0).
    addr: SocketAddr,
    /// Requests received so far, the one being answered included.
    requests: AtomicU64,
    health: Health,
    /// `--upstream` and the client that calls it.
    upstream: Option<(String, reqwest::Client)>,
}

impl Instance {
    fn new(id: String, name: &str, addr: SocketAddr, fail_after: Option<u64>) -> Instance {
        Instance {
            id,
            name: name.to_string(),
            hostname: crate::identity::hostname(),
            addr,
            requests: AtomicU64::new(0),
            health: Health {
                failed: AtomicBool::new(false),
                probes: AtomicU64::new(0),
                fail_after,
            },
            upstream: None,
        }
    }

    fn from_args(args: &HelloArgs, addr: SocketAddr) -> Instance {
        let id = args
            .id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", args.name, addr.port()));
        let mut instance = Instance::new(id, &args.name, addr, args.fail_after);
        instance.upstream = args.upstream.clone().map(|url| {
            // Long enough for a proxy that queues the call while the
            // upstream service has no instance.
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .no_proxy()
                .build()
                .unwrap_or_default();
            (url, client)
        });
        instance
    }
}

fn parse_host(s: &str) -> Result<String, String> {
    ListenAddr::with_port(s, 0).map(|_| s.to_string())
}

/// The state behind `/health`: failed by hand, or after `fail_after` probes.
struct Health {
    failed: AtomicBool,
    probes: AtomicU64,
    fail_after: Option<u64>,
}

impl Health {
    /// Counts one probe and says whether the instance is healthy.
    fn probe(&self) -> bool {
        let n = self.probes.fetch_add(1, Ordering::SeqCst) + 1;
        !self.failed.load(Ordering::SeqCst) && self.fail_after.is_none_or(|max| n <= max)
    }

    /// Fails or heals by hand; healing also restarts the `fail_after` count.
    fn set(&self, healthy: bool) {
        self.failed.store(!healthy, Ordering::SeqCst);
        if healthy {
            self.probes.store(0, Ordering::SeqCst);
        }
    }
}

/// Serves one hello instance named `name` on `listener` until `cancel`
/// (the `shoal dev --demo` instances); returns its instance ID at once.
pub fn serve_embedded(
    listener: tokio::net::TcpListener,
    name: &str,
    cancel: CancellationToken,
) -> anyhow::Result<String> {
    let addr = listener.local_addr().context("listener has no address")?;
    let instance = Arc::new(Instance::new(
        format!("{name}-{}", addr.port()),
        name,
        addr,
        None,
    ));
    let id = instance.id.clone();
    let serving =
        axum::serve(listener, router(instance)).with_graceful_shutdown(cancel.cancelled_owned());
    tokio::spawn(serving.into_future());
    Ok(id)
}

/// Runs `shoal hello` until SIGINT or SIGTERM.
pub async fn run(args: HelloArgs) -> anyhow::Result<()> {
    // Installed before the address is announced, so a signal sent as soon
    // as the line appears is never lost.
    let mut signals = Signals::install()?;
    let at = ListenAddr::with_port(&args.addr, args.port).map_err(anyhow::Error::msg)?;
    let mut listeners = listen::bind_tcp(&at, "shoal hello").await?.into_iter();
    let first = listeners.next().context("no listener")?;
    let addr = first.addr;
    let instance = Arc::new(Instance::from_args(&args, addr));
    let cancel = CancellationToken::new();
    let app = router(instance.clone());
    let mut also = Vec::new();
    for more in listeners {
        also.push(more.addr);
        let serving = axum::serve(more.socket, app.clone())
            .with_graceful_shutdown(cancel.clone().cancelled_owned());
        tokio::spawn(serving.into_future());
    }
    let serving =
        axum::serve(first.socket, app).with_graceful_shutdown(cancel.clone().cancelled_owned());
    let mut server = tokio::spawn(serving.into_future());
    let registry = match &args.register {
        Some(url) => Some(register(url, &args.tags, &instance).await?),
        None => None,
    };
    // A stable, parseable line for people and for test harnesses.
    println!("shoal hello: listening on http://{addr}");
    for more in also {
        println!("shoal hello: also listening on http://{more}");
    }
    tracing::info!(id = %instance.id, name = %instance.name, %addr, "shoal hello started");
    tokio::select! {
        name = signals.recv() => tracing::info!("{name}: shutting down"),
        r = &mut server => return r.context("server task failed")?.context("server failed"),
    }
    let deregistered = match registry {
        Some(client) => deregister(&client, &instance.id).await,
        None => Ok(()),
    };
    if !args.drain.is_zero() {
        instance.health.set(false);
        tracing::info!(drain = ?args.drain, "still answering while load balancers drop this instance");
        tokio::select! {
            _ = tokio::time::sleep(args.drain) => {}
            name = signals.recv() => tracing::info!("{name} again: closing now"),
        }
    }
    cancel.cancel();
    match tokio::time::timeout(MAX_DELAY, server).await {
        Ok(r) => r.context("server task failed")?.context("server failed")?,
        Err(_) => tracing::warn!("in-flight requests did not finish in {MAX_DELAY:?}"),
    }
    tracing::info!("shoal hello stopped");
    deregistered
}

/// SIGINT and SIGTERM, watched from the moment they are installed.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
        })
    }

    /// Waits for either signal and names it.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Registers the instance, with an HTTP check on `/health`, through the
/// registry's agent API.
async fn register(
    url: &str,
    tags: &[String],
    instance: &Instance,
) -> anyhow::Result<RemoteCatalog> {
    let client = RemoteCatalog::new(RemoteConfig::new(url)).context("bad --register URL")?;
    client
        .agent_register(&service_definition(tags, instance))
        .await
        .with_context(|| format!("cannot register {} with {}", instance.id, client.base_url()))?;
    tracing::info!(id = %instance.id, registry = client.base_url(), "registered");
    Ok(client)
}

async fn deregister(client: &RemoteCatalog, id: &str) -> anyhow::Result<()> {
    client
        .agent_deregister(id)
        .await
        .with_context(|| format!("cannot deregister {id} from {}", client.base_url()))?;
    tracing::info!(id, registry = client.base_url(), "deregistered");
    Ok(())
}

/// The Consul service definition of this instance. Listening on every
/// address registers no address of its own (the node's is used) and
/// checks through the loopback address; in a container, whose loopback no
/// agent elsewhere reaches, it registers and checks its own address.
fn service_definition(tags: &[String], instance: &Instance) -> Value {
    let own = crate::container::detected()
        .and(crate::container::own_address())
        .filter(|_| instance.addr.ip().is_unspecified());
    let (address, checked) = match (instance.addr.ip(), own) {
        (_, Some(own)) => (own.to_string(), own),
        (IpAddr::V4(ip), None) if ip.is_unspecified() => {
            (String::new(), Ipv4Addr::LOCALHOST.into())
        }
        (IpAddr::V6(ip), None) if ip.is_unspecified() => {
            (String::new(), Ipv6Addr::LOCALHOST.into())
        }
        (ip, None) => (ip.to_string(), ip),
    };
    let checked = SocketAddr::new(checked, instance.addr.port());
    json!({
        "ID": instance.id,
        "Name": instance.name,
        "Address": address,
        "Port": instance.addr.port(),
        "Tags": tags,
        // It registers only once it listens, so it starts out passing
        // (Consul's initial `Status`) and is routable at once.
        "Check": {"HTTP": format!("http://{checked}/health"), "Interval": "1s", "Timeout": "1s", "Status": "passing"},
    })
}

fn router(instance: Arc<Instance>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/json", any(info))
        .route("/health", get(health))
        .route("/health/fail", put(health_fail))
        .route("/health/ok", put(health_ok))
        .route("/delay/{ms}", any(delay))
        .route("/echo", post(echo).put(echo))
        .route("/status/{code}", any(status))
        .route("/ws", get(websocket))
        .route("/upstream", any(upstream))
        .layer(middleware::from_fn_with_state(instance.clone(), count))
        .with_state(instance)
}

type Shared = State<Arc<Instance>>;

async fn count(State(instance): Shared, request: Request, next: Next) -> Response {
    instance.requests.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

/// What `/json` and friends answer: the instance and the request it got.
fn describe(instance: &Instance, method: &Method, uri: &Uri, headers: &HeaderMap) -> Value {
    let mut echoed = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        match echoed.get_mut(name.as_str()) {
            Some(Value::String(seen)) => *seen = format!("{seen}, {value}"),
            _ => {
                echoed.insert(name.as_str().to_string(), value.into());
            }
        }
    }
    json!({
        "id": instance.id,
        "name": instance.name,
        "hostname": instance.hostname,
        "addr": instance.addr.to_string(),
        "requests": instance.requests.load(Ordering::SeqCst),
        "path": uri.path(),
        "method": method.as_str(),
        "headers": echoed,
    })
}

/// `/upstream`: GETs `--upstream` and answers this instance's description
/// with the upstream's answer inside (`upstream.status`, `upstream.body`:
/// JSON when it is). 200 when the upstream answered 2xx, else 502; 404
/// without `--upstream`.
async fn upstream(
    State(instance): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut me = describe(&instance, &method, &uri, &headers);
    let Some((url, client)) = &instance.upstream else {
        return json_response(StatusCode::NOT_FOUND, &json!({"error": "no --upstream"}));
    };
    let (status, answer) = match client.get(url).send().await {
        Ok(r) => {
            let code = r.status();
            let text = r.text().await.unwrap_or_default();
            let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
            let status = if code.is_success() {
                StatusCode::OK
            } else {
                StatusCode::BAD_GATEWAY
            };
            (
                status,
                json!({"url": url, "status": code.as_u16(), "body": body}),
            )
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            json!({"url": url, "error": e.to_string()}),
        ),
    };
    me["upstream"] = answer;
    json_response(status, &me)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let content_type = [(header::CONTENT_TYPE, "application/json")];
    (status, content_type, format!("{body}\n")).into_response()
}

/// `Accept: application/json` asks for JSON unless HTML is acceptable too
/// (browsers list both).
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json") && !v.contains("text/html"))
}

async fn home(State(instance): Shared, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if wants_json(&headers) {
        return json_response(
            StatusCode::OK,
            &describe(&instance, &method, &uri, &headers),
        );
    }
    Html(page(&instance)).into_response()
}

fn page(instance: &Instance) -> String {
    let id = escape(&instance.id);
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Hosted by {id}</title>\n\
         <style>body{{font-family:sans-serif;max-width:40em;margin:4em auto;text-align:center}}\
         h1{{font-size:2.4em}}p{{color:#555}}</style></head>\n<body>\n\
         <h1>Hosted by {id}</h1>\n\
         <p>host <b>{host}</b> &middot; listening on <b>{addr}</b> &middot; request <b>#{n}</b></p>\n\
         <p>Refresh the page: behind a load balancer another instance may answer.</p>\n\
         <p><a href=\"/json\">/json</a> &middot; <a href=\"/health\">/health</a></p>\n\
         </body></html>\n",
        host = escape(&instance.hostname),
        addr = instance.addr,
        n = instance.requests.load(Ordering::SeqCst),
    )
}

/// Escapes text for HTML element content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn info(State(instance): Shared, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    json_response(
        StatusCode::OK,
        &describe(&instance, &method, &uri, &headers),
    )
}

async fn health(State(instance): Shared) -> (StatusCode, &'static str) {
    if instance.health.probe() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
    }
}

async fn health_fail(State(instance): Shared) -> &'static str {
    instance.health.set(false);
    "unhealthy\n"
}

async fn health_ok(State(instance): Shared) -> &'static str {
    instance.health.set(true);
    "ok\n"
}

async fn delay(
    State(instance): Shared,
    Path(ms): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Ok(ms) = ms.parse::<u64>() else {
        let msg = format!("bad delay {ms:?}: milliseconds expected\n");
        return (StatusCode::BAD_REQUEST, msg).into_response();
    };
    tokio::time::sleep(Duration::from_millis(ms).min(MAX_DELAY)).await;
    json_response(
        StatusCode::OK,
        &describe(&instance, &method, &uri, &headers),
    )
}

/// Streams the request body back as it arrives, with its Content-Type.
async fn echo(request: Request) -> Response {
    let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
    let mut response = Response::new(Body::new(request.into_body()));
    if let Some(value) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// A status code from 100 to 599. (A 1xx cannot be a final answer over
/// HTTP/1.1: hyper replaces it with a 500.)
fn parse_status(code: &str) -> Option<StatusCode> {
    code.parse::<u16>()
        .ok()
        .filter(|c| (100..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
}

async fn status(
    State(instance): Shared,
    Path(code): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    match parse_status(&code) {
        Some(status) => json_response(status, &describe(&instance, &method, &uri, &headers)),
        None => {
            let msg = format!("bad status code {code:?}: 100 to 599 expected\n");
            (StatusCode::BAD_REQUEST, msg).into_response()
        }
    }
}

async fn websocket(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(echo_messages)
}

/// Sends every text and binary message back; the close handshake (and
/// pings) are answered by axum.
async fn echo_messages(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn status_codes_are_validated() {
        let cases = [
            ("418", Some(418)),
            ("100", Some(100)),
            ("599", Some(599)),
            ("99", None),
            ("600", None),
            ("abc", None),
            ("", None),
            ("-1", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_status(input).map(|s| s.as_u16()), want, "{input:?}");
        }
    }

    #[test]
    fn json_is_asked_for_only_without_html() {
        let cases = [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            (
                "text/html,application/xhtml+xml,application/json;q=0.9",
                false,
            ),
            ("*/*", false),
        ];
        for (accept, want) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
            assert_eq!(wants_json(&headers), want, "{accept:?}");
        }
        assert!(!wants_json(&HeaderMap::new()));
    }

    #[test]
    fn health_fails_after_n_probes_and_heals() {
        let health = Health {
            failed: AtomicBool::new(false),
            probes: AtomicU64::new(0),
            fail_after: Some(2),
        };
        assert!(health.probe() && health.probe());
        assert!(!health.probe());
        health.set(true);
        assert!(health.probe());
        health.set(false);
        assert!(!health.probe());
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    mod fuzz {
        use super::super::{escape, parse_status};
        use proptest::prelude::*;

        proptest! {
            // proptest's default: 256 cases, or $PROPTEST_CASES (bench/fuzz.sh).
            /// `/status/{code}`: any path segment is a status 100-599 or a 400, never a panic.
            #[test]
            fn fuzz_hello_status_code(code in "\\PC{0,8}|[0-9]{1,6}") {
                if let Some(status) = parse_status(&code) {
                    prop_assert!((100..=599).contains(&status.as_u16()));
                    prop_assert_eq!(Ok(status.as_u16()), code.parse::<u16>());
                }
            }

            /// The HTML page: no markup survives escaping, and nothing is lost.
            #[test]
            fn fuzz_hello_escape(s in "\\PC{0,64}") {
                let out = escape(&s);
                prop_assert!(!out.contains(['<', '>', '"', '\'']));
                let back = out
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'")
                    .replace("&amp;", "&");
                prop_assert_eq!(back, s);
            }
        }
    }
}
