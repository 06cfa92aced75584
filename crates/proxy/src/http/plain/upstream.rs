//! Connections to instances on the plain path: a pooled one that is still
//! open, or a new one; and one round trip on it up to the answer's head.

use super::{Io, READ_SIZE};
use crate::instance::Instance;
use crate::request::outcome::Failure;
use crate::Shared;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether an idle pooled connection is still open: nothing to read (a
/// closed or chatty one is dropped). Costs no system call unless the
/// reactor saw the socket become readable while it was idle.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// A pooled connection to `inst`, or a new one.
pub async fn connect(shared: &Shared, inst: &Instance) -> Result<TcpStream, Failure> {
    while let Some(stream) = inst.state.streams.take() {
        if still_open(&stream) {
            return Ok(stream);
        }
    }
    let connect = TcpStream::connect(inst.addr);
    let stream = tokio::time::timeout(shared.cfg.connect_timeout, connect)
        .await
        .map_err(|_| Failure::NotSent("connect timed out".into()))?
        .map_err(|e| Failure::NotSent(format!("connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Sends `io.out` on `stream` and reads the answer's head into `io.resp`
/// (interim 1xx answers are read past); its bytes stay in `io.up`.
pub async fn round_trip<C>(
    stream: &mut TcpStream,
    io: &mut Io<C>,
    head_request: bool,
) -> Result<(), Failure> {
    if let Err(e) = stream.write_all(&io.out).await {
        return Err(Failure::NoAnswer(format!("send: {e}")));
    }
    io.up.clear();
    let mut received = false;
    loop {
        io.up.reserve(READ_SIZE);
        let n = match stream.read_buf(&mut io.up).await {
            Ok(n) => n,
            Err(e) if !received => return Err(Failure::NoAnswer(format!("receive: {e}"))),
            Err(e) => return Err(Failure::BadAnswer(format!("receive: {e}"))),
        };
        if n == 0 && !received {
            return Err(Failure::NoAnswer(
                "connection closed before an answer".into(),
            ));
        } else if n == 0 {
            return Err(Failure::BadAnswer(
                "connection closed inside the answer".into(),
            ));
        }
        received = true;
        loop {
            match io.resp.parse(&io.up, head_request) {
                Ok(false) => break,
                Ok(true) if io.resp.status == 101 => {
                    return Err(Failure::BadAnswer(
                        "101 to a request without upgrade".into(),
                    ))
                }
                Ok(true) if io.resp.status < 200 => {
                    io.up.drain(..io.resp.len);
                }
                Ok(true) => return Ok(()),
                Err(e) => return Err(Failure::BadAnswer(e.into())),
            }
        }
    }
}
