//! The configuration files of the foreign servers in the throughput
//! benchmark, written into its temporary directory: the nginx that plays
//! the three backends, the nginx load balancer and the HAProxy load
//! balancer. Every path nginx writes (pid, logs, temp files) is inside
//! that directory, and nothing is logged per request.

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
    let upstreams: String = backends
        .iter()
        .map(|p| format!("        server 127.0.0.1:{p};\n"))
        .collect();
    let body = format!(
        "    upstream web {{\n{upstreams}        keepalive 64;\n        \
         keepalive_requests 1000000;\n    }}\n    \
         server {{\n        listen 127.0.0.1:{listen};\n        location / {{\n            \
         proxy_pass http://web;\n            proxy_http_version 1.1;\n            \
         proxy_set_header Connection \"\";\n        }}\n    }}\n"
    );
    nginx_main(dir, "balancer", &body)
}

/// What both nginx configurations share: one worker, files in `dir`, no
/// access log, and client keep-alive without nginx's default cap of 1,000
/// requests per connection (HAProxy and shoal have none).
fn nginx_main(dir: &Path, name: &str, servers: &str) -> String {
    let d = dir.display();
    format!(
        "# shoal-bench proxy throughput: nginx ({name})\n\
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
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, p)| format!("    server s{} 127.0.0.1:{p}\n", i + 1))
        .collect();
    format!(
        "# shoal-bench proxy throughput: HAProxy\n\
         global\n    nbthread 1\n    maxconn 4096\n\n\
         defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    \
         timeout server 30s\n    http-reuse always\n\n\
         frontend web\n    bind 127.0.0.1:{listen}\n    default_backend web\n\n\
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
}
