//! A recording backend: logs exactly the bytes it receives on each
//! connection, reads them as requests the way a lenient server would
//! (the first Content-Length wins over Transfer-Encoding, as in servers
//! that smuggling attacks aim at), answers each with a small 200, and
//! records every request it saw and every head that was ambiguous.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the backend read it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Every Host value (more than one is a violation too).
    pub hosts: Vec<String>,
    /// Every header, name lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the backend saw so far.
#[derive(Default)]
pub struct Log {
    pub requests: Vec<Seen>,
    /// Heads a strict reader would refuse (CL + TE, several CL or Host,
    /// no Host, unparseable bytes), with why.
    pub violations: Vec<String>,
    /// Every byte received, per connection.
    pub raw: Vec<Vec<u8>>,
}

/// A started recorder.
pub struct Recorder {
    pub port: u16,
    pub log: Arc<Mutex<Log>>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Log::default()));
        let l = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, l.clone()));
            }
        });
        Recorder { port, log }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().requests.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.log.lock().unwrap().violations.clone()
    }
}

enum Read {
    /// A request and the bytes it took.
    Request(Seen, usize),
    /// Not complete yet.
    Partial,
    /// Cannot be read: why.
    Bad(String),
}

fn read_request(buf: &[u8]) -> Read {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Read::Partial,
        Err(e) => {
            return Read::Bad(format!(
                "unparseable head ({e}): {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(80)])
            ))
        }
    };
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).to_string(),
            )
        })
        .collect();
    let all = |name: &str| {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    let (lengths, te, hosts) = (all("content-length"), all("transfer-encoding"), all("host"));
    let mut seen = Seen {
        method: req.method.unwrap_or("").to_string(),
        target: req.path.unwrap_or("").to_string(),
        hosts,
        headers: headers.clone(),
        body: Vec::new(),
    };
    let body = &buf[head_len..];
    // Lenient on purpose: the first Content-Length wins.
    if let Some(cl) = lengths.first() {
        let Ok(n) = cl.trim().parse::<usize>() else {
            return Read::Bad(format!("bad Content-Length {cl:?}"));
        };
        if body.len() < n {
            return Read::Partial;
        }
        seen.body = body[..n].to_vec();
        return Read::Request(seen, head_len + n);
    }
    if te
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        let mut at = 0;
        loop {
            let Some(eol) = body[at..].windows(2).position(|w| w == b"\r\n") else {
                return Read::Partial;
            };
            let line = String::from_utf8_lossy(&body[at..at + eol]).to_string();
            let size = line.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size, 16) else {
                return Read::Bad(format!("bad chunk size {line:?}"));
            };
            at += eol + 2;
            if size == 0 {
                // Trailers up to an empty line.
                loop {
                    let Some(eol) = body[at..].windows(2).position(|w| w == b"\r\n") else {
                        return Read::Partial;
                    };
                    at += eol + 2;
                    if eol == 0 {
                        return Read::Request(seen, head_len + at);
                    }
                }
            }
            if body.len() < at + size + 2 {
                return Read::Partial;
            }
            seen.body.extend_from_slice(&body[at..at + size]);
            at += size + 2;
        }
    }
    Read::Request(seen, head_len)
}

fn violations_of(seen: &Seen) -> Vec<String> {
    let count = |name: &str| seen.headers.iter().filter(|(n, _)| n == name).count();
    let mut v = Vec::new();
    if count("content-length") > 0 && count("transfer-encoding") > 0 {
        v.push("both Content-Length and Transfer-Encoding".to_string());
    }
    if count("content-length") > 1 {
        v.push("more than one Content-Length".to_string());
    }
    if seen.hosts.len() != 1 {
        v.push(format!("{} Host headers", seen.hosts.len()));
    }
    v
}

async fn serve(mut stream: TcpStream, log: Arc<Mutex<Log>>) {
    let conn = {
        let mut l = log.lock().unwrap();
        l.raw.push(Vec::new());
        l.raw.len() - 1
    };
    let mut buf = Vec::new();
    loop {
        match read_request(&buf) {
            Read::Request(seen, used) => {
                buf.drain(..used);
                {
                    let mut l = log.lock().unwrap();
                    for why in violations_of(&seen) {
                        l.violations
                            .push(format!("{why}: {} {}", seen.method, seen.target));
                    }
                    l.requests.push(seen);
                }
                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if stream.write_all(answer).await.is_err() {
                    return;
                }
                continue;
            }
            Read::Bad(why) => {
                log.lock().unwrap().violations.push(why);
                return;
            }
            Read::Partial => {}
        }
        let mut chunk = [0u8; 16384];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                log.lock().unwrap().raw[conn].extend_from_slice(&chunk[..n]);
            }
        }
    }
}
