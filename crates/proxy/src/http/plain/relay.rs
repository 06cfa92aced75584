//! An upstream's answer on its way to the client: the head rewritten, the
//! body relayed as it arrives — by Content-Length, chunked (relayed as
//! sent once its framing checks out), or until the upstream closes
//! (re-framed as chunked so the client connection stays open). The
//! upstream connection goes back to the pool when the answer ended
//! exactly where its framing said. An answer that breaks off is reported
//! as such (`AnswerEnd::Broken`), and the client connection closes
//! without the answer looking complete.

use super::response::Framing;
use super::rewrite;
use super::{ClientStream, Io};
use crate::http::chunked::{ChunkError, Chunked};
use crate::instance::Instance;
use crate::request::outcome::AnswerEnd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a relay stopped early.
enum Stop {
    /// The upstream closed early, failed or framed the body wrong.
    Upstream(String),
    /// Writing to the client failed.
    Client,
}

type Relayed = Result<bool, Stop>;

/// Relays the answer whose head is in `io.resp`: how it ended, and
/// whether the client connection stays open.
pub async fn relay<C: ClientStream>(
    mut up: TcpStream,
    io: &mut Io<C>,
    client_close: bool,
    inst: &Instance,
    max_idle: usize,
) -> (AnswerEnd, bool) {
    let framing = io.resp.framing;
    let chunk = matches!(framing, Framing::Chunked | Framing::UntilClose);
    rewrite::client_response(&io.up, &io.resp, chunk, client_close, &mut io.out);
    let start = io.resp.len;
    let relayed = match framing {
        Framing::Empty => write(io, Whole::Out).await.map(|_| io.up.len() == start),
        Framing::Length(n) => by_length(&mut up, io, n).await,
        Framing::Chunked => chunked(&mut up, io).await,
        Framing::UntilClose => until_close(&mut up, io).await,
    };
    match relayed {
        Ok(clean) => {
            if clean && io.resp.reusable {
                inst.state.streams.put(up, max_idle);
            }
            (AnswerEnd::Complete, !client_close)
        }
        Err(Stop::Upstream(why)) => (AnswerEnd::Broken(why), false),
        Err(Stop::Client) => (AnswerEnd::ClientGone, false),
    }
}

/// What of the buffers goes to the client.
enum Whole {
    /// All of `io.out`.
    Out,
    /// The first bytes of `io.up`.
    Up(usize),
}

async fn write<C: ClientStream>(io: &mut Io<C>, what: Whole) -> Result<(), Stop> {
    let bytes = match what {
        Whole::Out => &io.out[..],
        Whole::Up(n) => &io.up[..n],
    };
    io.stream.write_all(bytes).await.map_err(|_| Stop::Client)
}

/// Room made for each read of a body beyond what came with the head.
const BODY_READ_SIZE: usize = 32 * 1024;

/// Reads the next bytes of the body into `io.up` (emptied first); an
/// early close is the upstream's fault.
async fn read_more<C>(up: &mut TcpStream, io: &mut Io<C>, close_ends: bool) -> Result<usize, Stop> {
    io.up.clear();
    io.up.reserve(BODY_READ_SIZE);
    match up.read_buf(&mut io.up).await {
        Ok(0) if !close_ends => Err(Stop::Upstream("upstream closed inside the body".into())),
        Ok(n) => Ok(n),
        Err(e) => Err(Stop::Upstream(format!("receive: {e}"))),
    }
}

/// A body of `n` bytes; Ok(true) when nothing followed it.
async fn by_length<C: ClientStream>(up: &mut TcpStream, io: &mut Io<C>, n: u64) -> Relayed {
    let start = io.resp.len;
    let have = (io.up.len() - start) as u64;
    let first = have.min(n) as usize;
    io.out.extend_from_slice(&io.up[start..start + first]);
    write(io, Whole::Out).await?;
    let (mut left, mut extra) = (n - first as u64, have > n);
    while left > 0 {
        let got = read_more(up, io, false).await?;
        let take = (got as u64).min(left) as usize;
        write(io, Whole::Up(take)).await?;
        left -= take as u64;
        extra |= got > take;
    }
    Ok(!extra)
}

/// A chunked body, relayed as sent; Ok(true) when nothing followed it.
async fn chunked<C: ClientStream>(up: &mut TcpStream, io: &mut Io<C>) -> Relayed {
    let mut framing = Chunked::default();
    let start = io.resp.len;
    let bad = |e: ChunkError| Stop::Upstream(e.0.to_string());
    let used = framing.advance(&io.up[start..]).map_err(bad)?;
    io.out.extend_from_slice(&io.up[start..start + used]);
    let mut extra = start + used < io.up.len();
    write(io, Whole::Out).await?;
    while !framing.is_done() {
        let got = read_more(up, io, false).await?;
        let used = framing.advance(&io.up).map_err(bad)?;
        write(io, Whole::Up(used)).await?;
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
async fn until_close<C: ClientStream>(up: &mut TcpStream, io: &mut Io<C>) -> Relayed {
    let start = io.resp.len;
    let first = io.up.split_off(start);
    chunk_of(&mut io.out, &first);
    write(io, Whole::Out).await?;
    loop {
        let got = read_more(up, io, true).await?;
        io.out.clear();
        if got == 0 {
            io.out.extend_from_slice(b"0\r\n\r\n");
            write(io, Whole::Out).await?;
            return Ok(false);
        }
        chunk_of(&mut io.out, &io.up);
        write(io, Whole::Out).await?;
    }
}
