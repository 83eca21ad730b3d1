//! The two halves of a TLS member's stream, as the TCP connection's reader and writer want them
//! ([`LineSource`], [`LineSink`]). rustls keeps one session for both directions, so they share it
//! through tokio's `split` (a lock that is never contended: both halves run in one task).

use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::protocol;
use crate::transport::stream::reader::{LineSource, READ_CHUNK};
use crate::transport::stream::writer::{Backlog, LineSink, SENDQ_CHECK, SHUTDOWN_NOTICE};
use crate::transport::stream::WriteEnd;
use crate::transport::tcp::set_unsent_limit_fd;

/// The reading half: decrypted bytes.
pub(super) struct TlsReader(ReadHalf<TlsStream<TcpStream>>);

/// The writing half: lines encrypted into rustls' buffer, then flushed to the socket.
pub(super) struct TlsWriter {
    half: WriteHalf<TlsStream<TcpStream>>,
    /// The socket underneath, for the unsent limit at goodbye; it lives as long as `half`.
    fd: RawFd,
}

/// Splits an established TLS stream into the halves a member connection runs on.
pub(super) fn split(tls: TlsStream<TcpStream>) -> (TlsReader, TlsWriter) {
    let fd = tls.get_ref().0.as_raw_fd();
    let (read, write) = tokio::io::split(tls);
    (TlsReader(read), TlsWriter { half: write, fd })
}

impl LineSource for TlsReader {
    async fn read_into(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        clean_eof(self.read_some(buf).await)
    }
}

impl TlsReader {
    async fn read_some(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        if buf.capacity() > buf.len() {
            return self.0.read_buf(buf).await;
        }
        // Nothing reserved: an idle member. Wait with room for one byte, so idle TLS members
        // hold no read buffer of ours (rustls keeps its own), then take what else is decrypted.
        buf.reserve(1);
        let first = self.0.read_buf(buf).await?;
        if first == 0 {
            return Ok(0);
        }
        buf.reserve(READ_CHUNK);
        match self.0.read_buf(buf).now_or_never() {
            Some(Ok(more)) => Ok(first + more),
            // The end or an error shows again on the next read; these bytes are handled first.
            Some(Err(_)) | None => Ok(first),
        }
    }
}

/// A peer that closes the socket without TLS's close_notify (ncat, openssl s_client at the end
/// of their input, most clients that just exit) has simply left: for a line protocol a cut-off
/// stream means no more than a TCP FIN does, and its last partial line is still taken.
fn clean_eof(read: std::io::Result<usize>) -> std::io::Result<usize> {
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        read => read,
    }
}

impl LineSink for TlsWriter {
    async fn write_batch(
        &mut self,
        batch: &[u8],
        backlog: &Backlog<'_>,
        server: &CancellationToken,
    ) -> Result<(), WriteEnd> {
        // Bytes rustls has taken: they go out with the flush, or with the goodbye's. (An atomic
        // only because the future must be Send; it never leaves this task.)
        let written = AtomicUsize::new(0);
        let half = &mut self.half;
        let mut send = std::future::poll_fn(|cx| poll_send(half, cx, batch, &written));
        if let Some(sent) = (&mut send).now_or_never() {
            return sent.map_err(WriteEnd::Io);
        }
        backlog.held_up();
        loop {
            tokio::select! {
                sent = &mut send => return sent.map_err(WriteEnd::Io),
                _ = server.cancelled() => return Err(WriteEnd::Interrupted(written.load(Ordering::Relaxed))),
                _ = tokio::time::sleep(SENDQ_CHECK), if backlog.enforced() => {
                    if backlog.too_slow() {
                        return Err(WriteEnd::TooSlow);
                    }
                }
            }
        }
    }

    async fn goodbye(&mut self, rest: &[u8], told: bool) -> Result<(), WriteEnd> {
        // The room the unsent limit kept free in the socket is for these last words.
        set_unsent_limit_fd(self.fd, i32::MAX);
        let mut last = rest.to_vec();
        if !told {
            last.extend_from_slice(&protocol::notice(SHUTDOWN_NOTICE));
        }
        // Bounded by the connection's goodbye timeout.
        self.half.write_all(&last).await.map_err(WriteEnd::Io)?;
        self.half.flush().await.map_err(WriteEnd::Io)
    }
}

/// Writes what is left of `batch` into the session, then flushes it to the socket.
fn poll_send(
    half: &mut WriteHalf<TlsStream<TcpStream>>,
    cx: &mut Context<'_>,
    batch: &[u8],
    written: &AtomicUsize,
) -> Poll<std::io::Result<()>> {
    while let Some(rest) = batch
        .get(written.load(Ordering::Relaxed)..)
        .filter(|rest| !rest.is_empty())
    {
        match Pin::new(&mut *half).poll_write(cx, rest) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                written.fetch_add(n, Ordering::Relaxed);
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    Pin::new(half).poll_flush(cx)
}

impl AsyncWrite for TlsWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.half).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.half).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.half).poll_shutdown(cx)
    }
}
