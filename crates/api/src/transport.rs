//! What the API's HTTP/1.1 server needs of a connection: wait until a read
//! may make progress, then read without waiting. That split is what lets a
//! parked connection hold no read buffer (see [`crate::http1`]); plain TCP
//! has it natively, a TLS stream gets it here.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A connection the HTTP/1.1 server can serve: readiness, then
/// non-blocking reads; writes through [`AsyncWrite`] (flushed after each
/// answer).
pub trait Transport: AsyncWrite + Unpin + Send + 'static {
    /// Resolves when a read may return data or the end (it may still find
    /// nothing: readiness can be stale).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;

    /// Reads what is there without waiting: `Ok(0)` at the end,
    /// `WouldBlock` when nothing is.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Transport for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        TcpStream::readable(self)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buf)
    }
}

/// A TLS connection as a [`Transport`].
///
/// rustls decrypts whole records, so plaintext can wait inside the TLS
/// session while the socket has nothing more: after a read that returned
/// data the connection counts as readable until a read finds nothing, and
/// only then waits on the socket.
pub struct TlsTransport {
    stream: TlsStream<TcpStream>,
    /// Whether the last read returned data (more may be decrypted already).
    maybe_buffered: bool,
}

impl TlsTransport {
    /// A connection whose handshake is done.
    pub fn new(stream: TlsStream<TcpStream>) -> Self {
        TlsTransport {
            stream,
            // The handshake's last flight may have carried a request.
            maybe_buffered: true,
        }
    }
}

impl Transport for TlsTransport {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        let (tcp, _) = self.stream.get_ref();
        let buffered = self.maybe_buffered;
        async move {
            if buffered {
                return Ok(());
            }
            tcp.readable().await
        }
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // A poll with a waker that does nothing: `Pending` means rustls has
        // no plaintext and the socket would block; the caller then waits on
        // `readable`, which registers its own waker with the socket.
        let mut cx = Context::from_waker(Waker::noop());
        let mut read = ReadBuf::new(buf);
        match Pin::new(&mut self.stream).poll_read(&mut cx, &mut read) {
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                self.maybe_buffered = n > 0;
                Ok(n)
            }
            // A peer that closes without close_notify has still closed: the
            // same end as plain TCP's, so a write in flight runs to its end.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.maybe_buffered = false;
                Ok(0)
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => {
                self.maybe_buffered = false;
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
    }
}

impl AsyncWrite for TlsTransport {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
