//! An upstream's answer on its way to the client: the head rewritten, the
//! body relayed as it arrives — by Content-Length, chunked (relayed as
//! sent once its framing checks out), or until the upstream closes
//! (re-framed as chunked so the client connection stays open). The
//! upstream connection goes back to the pool when the answer ended
//! exactly where its framing said.

use super::Io;
use crate::h1::chunked::Chunked;
use crate::h1::response::Framing;
use crate::h1::rewrite;
use crate::instance::Instance;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Relays the answer whose head is in `io.resp`; false when the client
/// connection must close (the client asked, or the answer broke off).
pub async fn relay(
    mut up: TcpStream,
    io: &mut Io,
    client_close: bool,
    inst: &Instance,
    max_idle: usize,
) -> bool {
    let framing = io.resp.framing;
    let chunk = matches!(framing, Framing::Chunked | Framing::UntilClose);
    rewrite::client_response(&io.up, &io.resp, chunk, client_close, &mut io.out);
    let start = io.resp.len;
    let relayed = match framing {
        Framing::Empty => io
            .stream
            .write_all(&io.out)
            .await
            .map(|_| io.up.len() == start),
        Framing::Length(n) => by_length(&mut up, io, n).await,
        Framing::Chunked => chunked(&mut up, io).await,
        Framing::UntilClose => until_close(&mut up, io).await,
    };
    match relayed {
        Ok(clean) => {
            if clean && io.resp.reusable {
                inst.state.streams.put(up, max_idle);
            }
            !client_close
        }
        Err(_) => false,
    }
}

fn broken(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what.to_string())
}

/// Room made for each read of a body beyond what came with the head.
const BODY_READ_SIZE: usize = 32 * 1024;

/// Reads the next bytes of the body into `io.up` (emptied first).
async fn read_more(up: &mut TcpStream, io: &mut Io) -> io::Result<usize> {
    io.up.clear();
    io.up.reserve(BODY_READ_SIZE);
    up.read_buf(&mut io.up).await
}

/// A body of `n` bytes; Ok(true) when nothing followed it.
async fn by_length(up: &mut TcpStream, io: &mut Io, n: u64) -> io::Result<bool> {
    let start = io.resp.len;
    let have = (io.up.len() - start) as u64;
    let first = have.min(n) as usize;
    io.out.extend_from_slice(&io.up[start..start + first]);
    io.stream.write_all(&io.out).await?;
    let (mut left, mut extra) = (n - first as u64, have > n);
    while left > 0 {
        let got = read_more(up, io).await?;
        if got == 0 {
            return Err(broken("upstream closed inside the body"));
        }
        let take = (got as u64).min(left) as usize;
        io.stream.write_all(&io.up[..take]).await?;
        left -= take as u64;
        extra |= got > take;
    }
    Ok(!extra)
}

/// A chunked body, relayed as sent; Ok(true) when nothing followed it.
async fn chunked(up: &mut TcpStream, io: &mut Io) -> io::Result<bool> {
    let mut framing = Chunked::default();
    let start = io.resp.len;
    let bad = |e: crate::h1::chunked::ChunkError| io::Error::new(io::ErrorKind::InvalidData, e.0);
    let used = framing.advance(&io.up[start..]).map_err(bad)?;
    io.out.extend_from_slice(&io.up[start..start + used]);
    let mut extra = start + used < io.up.len();
    io.stream.write_all(&io.out).await?;
    while !framing.is_done() {
        let got = read_more(up, io).await?;
        if got == 0 {
            return Err(broken("upstream closed inside the body"));
        }
        let used = framing.advance(&io.up).map_err(bad)?;
        io.stream.write_all(&io.up[..used]).await?;
        extra |= used < got;
    }
    Ok(!extra)
}

/// Appends `data` as one chunk.
fn chunk_of(out: &mut Vec<u8>, data: &[u8]) {
    if !data.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

/// A body that ends when the upstream closes, sent on as chunks.
async fn until_close(up: &mut TcpStream, io: &mut Io) -> io::Result<bool> {
    let start = io.resp.len;
    let first = io.up.split_off(start);
    chunk_of(&mut io.out, &first);
    io.stream.write_all(&io.out).await?;
    loop {
        let got = read_more(up, io).await?;
        io.out.clear();
        if got == 0 {
            io.out.extend_from_slice(b"0\r\n\r\n");
            io.stream.write_all(&io.out).await?;
            return Ok(false);
        }
        chunk_of(&mut io.out, &io.up);
        io.stream.write_all(&io.out).await?;
    }
}
