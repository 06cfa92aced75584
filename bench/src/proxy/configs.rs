//! The configuration files of the foreign servers in the throughput and
//! edge benchmarks, written into their temporary directory: the nginx that
//! plays the three backends, the nginx load balancer and the HAProxy load
//! balancer (for `edge`, with a TLS listener beside the plain one). Every
//! path nginx writes (pid, logs, temp files) is inside that directory, and
//! nothing is logged per request.

use std::path::Path;

/// The backends: one nginx worker answering `200 hello-<n>` (7 bytes) on
/// each port, so any proxy's answers show which backend served them.
pub fn nginx_backends(dir: &Path, ports: &[u16]) -> String {
    let servers: String = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            format!(
                "    server {{\n        listen 127.0.0.1:{port};\n        \
                 location / {{ default_type text/plain; return 200 \"hello-{n}\"; }}\n    }}\n",
                n = i + 1
            )
        })
        .collect();
    nginx_main(dir, "backends", &servers)
}

/// The nginx load balancer: one worker process, round robin over the
/// backends with `keepalive 64` upstream connections over HTTP/1.1.
pub fn nginx_balancer(dir: &Path, listen: u16, backends: &[u16]) -> String {
    let listens = format!("        listen 127.0.0.1:{listen};\n");
    nginx_main(dir, "balancer", &nginx_proxy_server(&listens, backends))
}

/// The TLS listener of the edge benchmark's balancers: its port and the
/// certificate every balancer serves.
pub struct Tls<'a> {
    /// The HTTPS port (HTTP/1.1 and h2 by ALPN).
    pub port: u16,
    /// The certificate (PEM).
    pub cert: &'a Path,
    /// Its private key (PEM).
    pub key: &'a Path,
    /// Certificate and key in one PEM file (HAProxy's `crt`).
    pub pem: &'a Path,
}

/// The edge benchmark's nginx balancer: [`nginx_balancer`] listening on
/// `plain` and on `tls.port` with TLS 1.2/1.3 and h2, a shared session
/// cache and session tickets. `http2_directive`: nginx 1.25.1 or later,
/// where `http2 on;` replaced `listen ... http2`.
pub fn nginx_edge_balancer(
    dir: &Path,
    plain: u16,
    tls: &Tls,
    backends: &[u16],
    http2_directive: bool,
) -> String {
    let (listen_h2, http2_on) = if http2_directive {
        ("", "        http2 on;\n")
    } else {
        (" http2", "")
    };
    let listens = format!(
        "        listen 127.0.0.1:{plain};\n        \
         listen 127.0.0.1:{port} ssl{listen_h2};\n{http2_on}        \
         ssl_certificate {cert};\n        \
         ssl_certificate_key {key};\n        \
         ssl_protocols TLSv1.2 TLSv1.3;\n        \
         ssl_session_cache shared:SSL:10m;\n        \
         ssl_session_timeout 1h;\n        \
         ssl_session_tickets on;\n",
        port = tls.port,
        cert = tls.cert.display(),
        key = tls.key.display(),
    );
    nginx_main(dir, "balancer", &nginx_proxy_server(&listens, backends))
}

/// The upstream of the backends and one server block with `listens`
/// (`listen` and TLS lines) proxying everything to it.
fn nginx_proxy_server(listens: &str, backends: &[u16]) -> String {
    let upstreams: String = backends
        .iter()
        .map(|p| format!("        server 127.0.0.1:{p};\n"))
        .collect();
    format!(
        "    upstream web {{\n{upstreams}        keepalive 64;\n        \
         keepalive_requests 1000000;\n    }}\n    \
         server {{\n{listens}        location / {{\n            \
         proxy_pass http://web;\n            proxy_http_version 1.1;\n            \
         proxy_set_header Connection \"\";\n        }}\n    }}\n"
    )
}

/// What both nginx configurations share: one worker, files in `dir`, no
/// access log, and client keep-alive without nginx's default cap of 1,000
/// requests per connection (HAProxy and shoal have none).
fn nginx_main(dir: &Path, name: &str, servers: &str) -> String {
    let d = dir.display();
    format!(
        "# shoal-bench proxy: nginx ({name})\n\
         worker_processes 1;\n\
         pid {d}/{name}.pid;\n\
         error_log {d}/{name}-error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n    \
         access_log off;\n    \
         keepalive_requests 1000000;\n    \
         client_body_temp_path {d}/{name}-body;\n    \
         proxy_temp_path {d}/{name}-proxy;\n    \
         fastcgi_temp_path {d}/{name}-fastcgi;\n    \
         uwsgi_temp_path {d}/{name}-uwsgi;\n    \
         scgi_temp_path {d}/{name}-scgi;\n\
         {servers}}}\n"
    )
}

/// HAProxy: one thread, HTTP mode, round robin over the backends, idle
/// server connections shared between clients (`http-reuse always`).
pub fn haproxy(listen: u16, backends: &[u16]) -> String {
    let binds = format!("    bind 127.0.0.1:{listen}\n");
    haproxy_with_binds(&binds, "    maxconn 4096\n", backends)
}

/// The edge benchmark's HAProxy: [`haproxy`] bound to `plain` and to
/// `tls.port` with TLS 1.2/1.3 and ALPN h2 and http/1.1 (its session
/// cache and tickets are on by default). `maxconn 2000`, not 4096:
/// HAProxy wants two descriptors per connection and refuses to start
/// when that exceeds the limit, and `ulimit -n 4096` is a usual one.
pub fn haproxy_edge(plain: u16, tls: &Tls, backends: &[u16]) -> String {
    let binds = format!(
        "    bind 127.0.0.1:{plain}\n    \
         bind 127.0.0.1:{port} ssl crt {pem} alpn h2,http/1.1\n",
        port = tls.port,
        pem = tls.pem.display(),
    );
    let global = "    maxconn 2000\n    ssl-default-bind-options ssl-min-ver TLSv1.2\n";
    haproxy_with_binds(&binds, global, backends)
}

fn haproxy_with_binds(binds: &str, global: &str, backends: &[u16]) -> String {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, p)| format!("    server s{} 127.0.0.1:{p}\n", i + 1))
        .collect();
    format!(
        "# shoal-bench proxy: HAProxy\n\
         global\n    nbthread 1\n{global}\n\
         defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    \
         timeout server 30s\n    http-reuse always\n\n\
         frontend web\n{binds}    default_backend web\n\n\
         backend web\n    balance roundrobin\n{servers}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_name_every_port_and_keep_files_in_the_directory() {
        let dir = Path::new("/tmp/x");
        let b = nginx_backends(dir, &[1001, 1002, 1003]);
        assert!(b.contains("listen 127.0.0.1:1002;"));
        assert!(b.contains("return 200 \"hello-3\";"));
        assert!(b.contains("pid /tmp/x/backends.pid;"));
        let l = nginx_balancer(dir, 2000, &[1001, 1002, 1003]);
        for want in [
            "server 127.0.0.1:1003;",
            "keepalive 64;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "listen 127.0.0.1:2000;",
            "access_log off;",
            "proxy_temp_path /tmp/x/balancer-proxy;",
        ] {
            assert!(l.contains(want), "{want} missing from\n{l}");
        }
        let h = haproxy(3000, &[1001, 1002, 1003]);
        for want in [
            "nbthread 1",
            "http-reuse always",
            "mode http",
            "balance roundrobin",
            "bind 127.0.0.1:3000",
            "server s3 127.0.0.1:1003",
        ] {
            assert!(h.contains(want), "{want} missing from\n{h}");
        }
    }

    #[test]
    fn edge_configs_add_a_tls_listener() {
        let dir = Path::new("/tmp/x");
        let tls = Tls {
            port: 4443,
            cert: Path::new("/tmp/x/edge.crt"),
            key: Path::new("/tmp/x/edge.key"),
            pem: Path::new("/tmp/x/edge.pem"),
        };
        let old = nginx_edge_balancer(dir, 2000, &tls, &[1001], false);
        for want in [
            "listen 127.0.0.1:2000;",
            "listen 127.0.0.1:4443 ssl http2;",
            "ssl_certificate /tmp/x/edge.crt;",
            "ssl_certificate_key /tmp/x/edge.key;",
            "ssl_protocols TLSv1.2 TLSv1.3;",
            "ssl_session_cache shared:SSL:10m;",
            "ssl_session_tickets on;",
            "server 127.0.0.1:1001;",
            "keepalive 64;",
        ] {
            assert!(old.contains(want), "{want} missing from\n{old}");
        }
        assert!(!old.contains("http2 on;"));
        let new = nginx_edge_balancer(dir, 2000, &tls, &[1001], true);
        assert!(new.contains("listen 127.0.0.1:4443 ssl;"));
        assert!(new.contains("http2 on;"));
        let h = haproxy_edge(3000, &tls, &[1001]);
        for want in [
            "bind 127.0.0.1:3000\n",
            "bind 127.0.0.1:4443 ssl crt /tmp/x/edge.pem alpn h2,http/1.1",
            "ssl-min-ver TLSv1.2",
            "maxconn 2000",
            "nbthread 1",
            "server s1 127.0.0.1:1001",
        ] {
            assert!(h.contains(want), "{want} missing from\n{h}");
        }
    }
}
