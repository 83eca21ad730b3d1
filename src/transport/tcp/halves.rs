//! The two halves of a plain TCP member's socket, as the stream reader and writer want them
//! ([`LineSource`], [`LineSink`]); TLS has its own (`tls::halves`).

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

use super::set_unsent_limit;
use crate::protocol;
use crate::transport::stream::reader::{LineSource, READ_CHUNK};
use crate::transport::stream::writer::{Backlog, LineSink, SENDQ_CHECK, SHUTDOWN_NOTICE};
use crate::transport::stream::{WriteEnd, GOODBYE_TIMEOUT};

impl LineSource for OwnedReadHalf {
    async fn read_into(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        loop {
            self.readable().await?;
            // Reserved only once bytes are there, so an idle connection holds no read buffer.
            buf.reserve(READ_CHUNK);
            match self.try_read_buf(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if buf.is_empty() {
                        *buf = BytesMut::new();
                    }
                }
                read => return read,
            }
        }
    }
}

impl LineSink for OwnedWriteHalf {
    /// netcat-openbsd (the `nc` most people have) keeps running after the server's FIN until its
    /// user presses Enter again, and only a reset makes it stop: so once the peer has
    /// acknowledged every byte (the `* bye` included) and had a moment to read it, the close
    /// resets the connection. A peer that acknowledges nothing within the goodbye timeout gets
    /// the reset anyway.
    async fn hang_up(&mut self) {
        let acked = async {
            while unacknowledged(self.as_ref()).is_some_and(|n| n > 0) {
                tokio::time::sleep(HANG_UP_POLL).await;
            }
        };
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, acked).await;
        tokio::time::sleep(HANG_UP_READ).await;
        let _ = socket2::SockRef::from(self.as_ref()).set_linger(Some(std::time::Duration::ZERO));
    }

    async fn write_batch(
        &mut self,
        batch: &[u8],
        backlog: &Backlog<'_>,
        server: &CancellationToken,
    ) -> Result<(), WriteEnd> {
        let mut written = 0;
        while written < batch.len() {
            match self.try_write(&batch[written..]) {
                Ok(0) => return Err(WriteEnd::Io(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    backlog.held_up();
                    loop {
                        tokio::select! {
                            ready = self.writable() => {
                                ready.map_err(WriteEnd::Io)?;
                                break;
                            }
                            _ = server.cancelled() => return Err(WriteEnd::Interrupted(written)),
                            _ = tokio::time::sleep(SENDQ_CHECK), if backlog.enforced() => {
                                if backlog.too_slow() {
                                    return Err(WriteEnd::TooSlow);
                                }
                            }
                        }
                    }
                }
                Err(e) => return Err(WriteEnd::Io(e)),
            }
        }
        Ok(())
    }

    async fn goodbye(&mut self, rest: &[u8], told: bool) -> Result<(), WriteEnd> {
        // The room the unsent limit kept free in the socket is for these last words.
        set_unsent_limit(self.as_ref(), i32::MAX);
        let mut last = rest.to_vec();
        if !told {
            last.extend_from_slice(&protocol::notice(SHUTDOWN_NOTICE));
        }
        // Bounded by the connection's goodbye timeout: a member that still does not read loses it.
        self.write_all(&last).await.map_err(WriteEnd::Io)
    }
}

/// How often [`LineSink::hang_up`] checks whether the peer has acknowledged everything.
const HANG_UP_POLL: std::time::Duration = std::time::Duration::from_millis(10);
/// How long the peer's program gets to read the last lines before the reset, which would make
/// netcat drop what it has not read yet.
const HANG_UP_READ: std::time::Duration = std::time::Duration::from_millis(150);

/// Bytes sent on `stream` that the peer has not acknowledged yet (`SIOCOUTQ`), where the platform
/// tells.
#[cfg(target_os = "linux")]
fn unacknowledged(stream: &tokio::net::TcpStream) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer, which lives across the call.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    (rc == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
fn unacknowledged(_stream: &tokio::net::TcpStream) -> Option<usize> {
    None
}
