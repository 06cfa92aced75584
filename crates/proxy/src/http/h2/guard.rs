//! A meter on what an HTTP/2 client sends, under hyper's h2: it reads
//! only frame headers as the bytes go by (no copy, no decoding) and
//! closes a connection that abuses the protocol the ways servers were
//! attacked through (CVE-2019-9512/9515/9518, CVE-2023-44487 "rapid
//! reset", the 2024 CONTINUATION flood):
//!
//! - frames that cost the server work but carry no request — SETTINGS and
//!   PING (each owes an acknowledgement), RST_STREAM, PRIORITY, empty
//!   DATA, unknown types — draw on a budget that refills with time
//!   ([`CONTROL_BURST`] at once, [`CONTROL_PER_SEC`] a second): a client
//!   that opens and resets streams, or floods SETTINGS or PING, runs out
//!   within milliseconds, where a browser or gRPC client never does;
//! - a header block (HEADERS and its CONTINUATIONs) larger than the
//!   proxy's head limit ends the connection at once, before h2 buffers it.
//!
//! h2 itself bounds concurrent streams, the decoded header list, pending
//! resets and CONTINUATION frame counts; this adds the rate limits it
//! leaves to the server.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Control frames a connection may send at once.
pub const CONTROL_BURST: f64 = 1000.0;
/// Control frames a second a connection may keep sending.
pub const CONTROL_PER_SEC: f64 = 500.0;

/// The client connection preface (RFC 9113 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection did to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abuse {
    /// Too many control frames (resets, SETTINGS, PING, ...) too fast.
    ControlFlood,
    /// A header block larger than allowed.
    HeaderBlockTooLarge,
}

impl Abuse {
    /// Why, for the log and the error.
    pub fn reason(self) -> &'static str {
        match self {
            Abuse::ControlFlood => "too many control frames (RST_STREAM, SETTINGS, PING, PRIORITY, empty DATA) too fast",
            Abuse::HeaderBlockTooLarge => "a header block larger than the request head limit",
        }
    }
}

/// The frame-header reader and its budgets.
pub struct Meter {
    preface_left: usize,
    head: [u8; 9],
    head_len: usize,
    skip: usize,
    block: usize,
    max_block: usize,
    tokens: f64,
    refilled: Instant,
}

impl Meter {
    /// A meter for a connection whose next bytes are the client preface;
    /// header blocks up to `max_block` bytes.
    pub fn new(max_block: usize) -> Self {
        Meter {
            preface_left: PREFACE.len(),
            head: [0; 9],
            head_len: 0,
            skip: 0,
            block: 0,
            max_block,
            tokens: CONTROL_BURST,
            refilled: Instant::now(),
        }
    }

    /// Reads `data`, the connection's next bytes.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Abuse> {
        while !data.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(data.len());
                self.preface_left -= n;
                data = &data[n..];
            } else if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
            } else {
                let n = (9 - self.head_len).min(data.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&data[..n]);
                self.head_len += n;
                data = &data[n..];
                if self.head_len == 9 {
                    self.head_len = 0;
                    self.frame()?;
                }
            }
        }
        Ok(())
    }

    fn frame(&mut self) -> Result<(), Abuse> {
        let h = self.head;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        self.skip = len;
        const END_STREAM: u8 = 0x1;
        const ACK: u8 = 0x1;
        const END_HEADERS: u8 = 0x4;
        match kind {
            // DATA: empty and not ending the stream is a no-op frame.
            0x0 if len == 0 && flags & END_STREAM == 0 => self.control(),
            0x0 => Ok(()),
            // HEADERS, then CONTINUATION: the block's size so far.
            0x1 | 0x9 => {
                self.block = if kind == 0x1 { len } else { self.block + len };
                if self.block > self.max_block {
                    return Err(Abuse::HeaderBlockTooLarge);
                }
                if flags & END_HEADERS != 0 {
                    self.block = 0;
                }
                // A CONTINUATION carrying nothing is a no-op frame.
                if kind == 0x9 && len == 0 {
                    return self.control();
                }
                Ok(())
            }
            // SETTINGS and PING acknowledgements answer the proxy's own.
            0x4 | 0x6 if flags & ACK != 0 => Ok(()),
            // WINDOW_UPDATE comes with every download; GOAWAY ends it all.
            0x8 | 0x7 => Ok(()),
            // PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, unknown.
            _ => self.control(),
        }
    }

    fn control(&mut self) -> Result<(), Abuse> {
        if self.tokens < 1.0 {
            let now = Instant::now();
            let secs = now.duration_since(self.refilled).as_secs_f64();
            self.tokens = (self.tokens + secs * CONTROL_PER_SEC).min(CONTROL_BURST);
            self.refilled = now;
            if self.tokens < 1.0 {
                return Err(Abuse::ControlFlood);
            }
        }
        if self.tokens >= CONTROL_BURST {
            self.refilled = Instant::now();
        }
        self.tokens -= 1.0;
        Ok(())
    }
}

/// `inner` with what is read from it metered; a read that shows abuse
/// fails, which ends the connection. `on_abuse` is told once.
pub struct Guarded<S, F: FnMut(Abuse)> {
    inner: S,
    meter: Meter,
    tripped: bool,
    on_abuse: F,
}

impl<S, F: FnMut(Abuse)> Guarded<S, F> {
    /// Meters `inner` with `meter`.
    pub fn new(inner: S, meter: Meter, on_abuse: F) -> Self {
        Guarded {
            inner,
            meter,
            tripped: false,
            on_abuse,
        }
    }
}

impl<S: AsyncRead + Unpin, F: FnMut(Abuse) + Unpin> AsyncRead for Guarded<S, F> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.tripped {
            return Poll::Ready(Err(io::Error::other("HTTP/2 connection closed for abuse")));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            if let Err(abuse) = this.meter.feed(&buf.filled()[before..]) {
                this.tripped = true;
                buf.set_filled(before);
                (this.on_abuse)(abuse);
                return Poll::Ready(Err(io::Error::other(abuse.reason())));
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin, F: FnMut(Abuse) + Unpin> AsyncWrite for Guarded<S, F> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, len: usize) -> Vec<u8> {
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.resize(9 + len, 0);
        f
    }

    fn many(f: &[u8], n: usize) -> Vec<u8> {
        f.iter().copied().cycle().take(f.len() * n).collect()
    }

    #[test]
    fn floods_trip_and_ordinary_traffic_does_not() {
        let headers = frame(0x1, 0x4 | 0x1, 40);
        let rst = frame(0x3, 0, 4);
        let request_and_reset: Vec<u8> = [headers.clone(), rst].concat();
        let cases: [(&str, Vec<u8>, Option<Abuse>); 8] = [
            ("10k requests", many(&headers, 10_000), None),
            ("window updates", many(&frame(0x8, 0, 4), 10_000), None),
            ("acks", many(&frame(0x4, 0x1, 0), 10_000), None),
            ("big data", many(&frame(0x0, 0, 16_384), 200), None),
            (
                "rapid reset",
                many(&request_and_reset, 5_000),
                Some(Abuse::ControlFlood),
            ),
            (
                "settings flood",
                many(&frame(0x4, 0, 6), 5_000),
                Some(Abuse::ControlFlood),
            ),
            (
                "ping flood",
                many(&frame(0x6, 0, 8), 5_000),
                Some(Abuse::ControlFlood),
            ),
            (
                "continuation flood",
                [frame(0x1, 0, 1000), many(&frame(0x9, 0, 1000), 100)].concat(),
                Some(Abuse::HeaderBlockTooLarge),
            ),
        ];
        for (name, bytes, want) in cases {
            let mut m = Meter::new(64 * 1024);
            let input = [PREFACE, &bytes].concat();
            // Fed in odd-sized pieces: frame headers split across reads.
            let got = input.chunks(777).try_for_each(|c| m.feed(c)).err();
            assert_eq!(got, want, "{name}");
        }
    }
}
