//! The component stream's socket: reads are buffered, and writes go through
//! one outgoing buffer that both the XML stream (the handshake, pings) and
//! stanzas serialized ahead of time append to.
//!
//! A stanza is serialized once, when the gateway queues it
//! ([`ComponentHandle::send`](super::ComponentHandle::send)); the
//! connection task writes that text as it is ([`Wire::push`]) instead of
//! parsing it back into an element for the XML stream to serialize again.
//! Both writers append to the same buffer, so the bytes leave in the order
//! they were written: the XML stream's own buffer is empty after every
//! flush, and the connection task flushes it (a ping is sent, not fed)
//! before it pushes text.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, BufReader, ReadBuf};

/// Above this many pending bytes a write from the XML stream waits for the
/// socket first.
const HIGH_WATER: usize = 64 * 1024;
/// A drained buffer with more capacity than this (after a stanza larger
/// than a burst) is shrunk back to it. Bursts stay below it
/// ([`Wire::pending`]): the buffer is reused, not grown and shrunk for
/// every burst, and stays below glibc's mmap threshold (an mmapped buffer
/// freed would raise the threshold for every later allocation).
const KEEP_CAPACITY: usize = 64 * 1024;

/// Bytes waiting for the socket.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// How much of `buf` the socket has taken.
    sent: usize,
}

impl Pending {
    /// Bytes not yet taken by the socket.
    fn queued(&self) -> usize {
        self.buf.len() - self.sent
    }
}

/// A socket with a read buffer and a shared write buffer (see the module).
pub(super) struct Wire<S> {
    read: BufReader<S>,
    out: Mutex<Pending>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub(super) fn new(socket: S) -> Self {
        Wire {
            read: BufReader::new(socket),
            out: Mutex::new(Pending::default()),
        }
    }

    /// Appends serialized XML to what goes out with the next flush.
    pub(super) fn push(&self, text: &str) {
        self.lock().buf.extend_from_slice(text.as_bytes());
    }

    /// How many bytes wait for the next flush.
    pub(super) fn pending(&self) -> usize {
        self.lock().queued()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Nothing panics while holding the lock; a poisoned one still holds
        // consistent bytes.
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes everything pending to the socket.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let out = self.out.get_mut().unwrap_or_else(|e| e.into_inner());
        while out.sent < out.buf.len() {
            let n = ready!(Pin::new(self.read.get_mut()).poll_write(cx, &out.buf[out.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            out.sent += n;
        }
        out.buf.clear();
        out.sent = 0;
        if out.buf.capacity() > KEEP_CAPACITY {
            out.buf.shrink_to(KEEP_CAPACITY);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Wire<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncBufRead for Wire<S> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().read).poll_fill_buf(cx)
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.read).consume(amt)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Wire<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let queued = this
            .out
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .queued();
        if queued >= HIGH_WATER {
            ready!(this.poll_drain(cx))?;
        }
        let out = this.out.get_mut().unwrap_or_else(|e| e.into_inner());
        out.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(this.read.get_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(this.read.get_mut()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Pushed text and written bytes leave in the order they came, through a
    /// pipe too narrow to take them at once (partial writes).
    #[tokio::test]
    async fn pushed_and_written_bytes_leave_in_order() -> io::Result<()> {
        let (near, mut far) = tokio::io::duplex(7);
        let mut wire = Wire::new(near);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.map(|_| got)
        });
        wire.write_all(b"<a/>").await?;
        wire.push("<b>pushed</b>");
        wire.write_all(b"<c/>").await?;
        wire.flush().await?;
        let big = "x".repeat(HIGH_WATER * 2);
        wire.push(&big);
        wire.write_all(b"<d/>").await?;
        wire.shutdown().await?;
        let got = reader.await.map_err(io::Error::other)??;
        let want = format!("<a/><b>pushed</b><c/>{big}<d/>");
        assert!(got == want.as_bytes(), "bytes out of order or lost");
        assert_eq!(wire.pending(), 0);
        let capacity = wire.lock().buf.capacity();
        assert!(capacity <= KEEP_CAPACITY, "{capacity} bytes kept");
        Ok(())
    }

    /// Nothing goes out before a flush (the connection task batches a burst
    /// into few writes).
    #[tokio::test]
    async fn nothing_leaves_before_a_flush() -> io::Result<()> {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut wire = Wire::new(near);
        wire.push("<a/>");
        wire.write_all(b"<b/>").await?;
        let mut buf = [0u8; 16];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(50), far.read(&mut buf)).await;
        assert!(early.is_err(), "bytes left before the flush");
        wire.flush().await?;
        let n = far.read(&mut buf).await?;
        assert_eq!(&buf[..n], b"<a/><b/>");
        Ok(())
    }

    /// What the far side sends is read through the buffer.
    #[tokio::test]
    async fn reads_pass_through() -> io::Result<()> {
        let (near, mut far) = tokio::io::duplex(64);
        let mut wire = Wire::new(near);
        far.write_all(b"<stream/>").await?;
        drop(far);
        let mut got = String::new();
        wire.read_to_string(&mut got).await?;
        assert_eq!(got, "<stream/>");
        Ok(())
    }
}
