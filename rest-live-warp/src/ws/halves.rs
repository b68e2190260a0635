//! The two halves of an upgraded socket: the reader task reads from one, the writer task writes
//! to the other, and neither waits for the other.
//!
//! When the server is ours ([`crate::serve`]), the upgrade gives back our own [`Socket`], and
//! both halves use its TCP stream directly (readiness plus non-blocking reads and writes, as
//! tokio's own split does): no lock between the halves and no dynamic dispatch through hyper's
//! `Upgraded`. Behind another server (`warp::serve`, say) the upgraded connection is split with
//! a lock instead.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::serve::Socket;

/// Splits an upgraded connection; the bytes are what the peer sent after its handshake and the
/// HTTP server already read (they come before anything read from the reading half).
pub(crate) fn split(upgraded: Upgraded) -> (ReadHalf, WriteHalf, Bytes) {
    match upgraded.downcast::<TokioIo<Socket>>() {
        Ok(parts) => {
            let socket = Arc::new(parts.io.into_inner());
            (
                ReadHalf::Direct(socket.clone()),
                WriteHalf::Direct(socket),
                parts.read_buf,
            )
        }
        Err(upgraded) => {
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            (
                ReadHalf::Shared(read),
                WriteHalf::Shared(write),
                Bytes::new(),
            )
        }
    }
}

/// The reading half of a socket.
pub(crate) enum ReadHalf {
    Direct(Arc<Socket>),
    Shared(tokio::io::ReadHalf<TokioIo<Upgraded>>),
}

/// The writing half of a socket.
pub(crate) enum WriteHalf {
    Direct(Arc<Socket>),
    Shared(tokio::io::WriteHalf<TokioIo<Upgraded>>),
}

impl ReadHalf {
    /// Reads into `buf`: the number of bytes read, 0 at the end of the stream.
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self {
            Self::Direct(socket) => loop {
                ready!(socket.stream().poll_read_ready(cx))?;
                match socket.stream().try_read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    read => return Poll::Ready(read),
                }
            },
            Self::Shared(half) => {
                // Initialized already: reading into it zeroes nothing.
                let mut read = ReadBuf::new(buf);
                ready!(Pin::new(half).poll_read(cx, &mut read))?;
                Poll::Ready(Ok(read.filled().len()))
            }
        }
    }
}

impl WriteHalf {
    /// Writes from `bufs` in order: the number of bytes written.
    pub fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            Self::Direct(socket) => loop {
                ready!(socket.stream().poll_write_ready(cx))?;
                match socket.stream().try_write_vectored(bufs) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    written => return Poll::Ready(written),
                }
            },
            Self::Shared(half) => Pin::new(half).poll_write_vectored(cx, bufs),
        }
    }

    /// Flushes what a buffering transport holds (a TCP stream holds nothing).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Direct(_) => Poll::Ready(Ok(())),
            Self::Shared(half) => Pin::new(half).poll_flush(cx),
        }
    }
}
