//! The accepted sockets, counted against the connection limit for as long as each is open: an
//! HTTP connection's socket and, after an upgrade, the WebSocket's (the upgraded connection owns
//! the same [`Socket`], so its slot is freed only when the WebSocket's socket is closed).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// The open sockets of one server: a slot each, at most `max`.
pub(super) struct Sockets {
    slots: Semaphore,
    max: u32,
    /// The descriptors of the open sockets, to shut them down when the server closes what is left.
    /// A socket's entry is removed before its descriptor is closed, under this lock, so every
    /// descriptor here is open and is that socket's.
    #[cfg(unix)]
    open: std::sync::Mutex<std::collections::HashSet<std::os::fd::RawFd>>,
}

impl Sockets {
    pub fn new(max: usize) -> Arc<Self> {
        let max = max.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Arc::new(Self {
            slots: Semaphore::new(max),
            max: max as u32,
            #[cfg(unix)]
            open: std::sync::Mutex::default(),
        })
    }

    /// `stream`, holding a slot until it is dropped; `None` (and the stream closed) when every
    /// slot is taken.
    pub fn admit(self: &Arc<Self>, stream: TcpStream) -> Option<Socket> {
        self.slots.try_acquire().ok()?.forget();
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            self.lock().insert(stream.as_raw_fd());
        }
        Some(Socket {
            stream,
            _slot: Slot(self.clone()),
        })
    }

    /// How many sockets are open.
    pub fn open(&self) -> usize {
        self.max as usize - self.slots.available_permits()
    }

    /// Resolves once every socket is closed.
    pub async fn all_closed(&self) {
        // Every slot free at once; given back at once too.
        let _ = self.slots.acquire_many(self.max).await;
    }

    /// Shuts down every open socket: its reads and writes fail at once, so that whatever task
    /// holds it ends and drops it.
    pub fn close_all(&self) {
        #[cfg(unix)]
        for &fd in self.lock().iter() {
            // SAFETY: `fd` is an open socket (see `open`); shutdown(2) changes no memory.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
    }

    #[cfg(unix)]
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<std::os::fd::RawFd>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An accepted TCP stream holding one of the server's slots.
pub(crate) struct Socket {
    stream: TcpStream,
    // Dropped after `stream` (fields drop in order): the slot is free once the socket is closed.
    _slot: Slot,
}

struct Slot(Arc<Sockets>);

impl Socket {
    /// The TCP stream (for reading and writing through a shared reference, as the two halves of
    /// an upgraded WebSocket do).
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.slots.add_permits(1);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Before `stream` closes the descriptor (see `Sockets::open`).
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            self._slot.0.lock().remove(&self.stream.as_raw_fd());
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
