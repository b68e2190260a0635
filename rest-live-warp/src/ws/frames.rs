//! The write side of a WebSocket, by hand: server frames are unmasked, so a frame is a header of
//! 2 to 10 bytes followed by the payload as it is. The writer gathers what is queued into one
//! batch and hands it to the socket with vectored writes (headers and payloads side by side, no
//! copy of a payload), a bounded number of bytes and slices per call.

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::Bytes;
use rest_live_core::transport::{CloseReason, Outgoing};

use super::halves::WriteHalf;

/// A batch is written out once it holds this many bytes, even if more is queued (so one
/// connection's burst does not hold its task for long, and memory per batch stays bounded).
pub(crate) const BATCH_BYTES: usize = 64 * 1024;

/// Slices per vectored write: Linux's `IOV_MAX`.
const MAX_SLICES: usize = 1024;

/// Frames a batch keeps room for once written (more is given back: an idle connection's writer
/// holds almost nothing).
const KEPT_FRAMES: usize = 32;

const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;

/// Appends the header of an unmasked, final frame (RFC 6455 §5.2).
pub(crate) fn header(opcode: u8, len: usize, out: &mut Vec<u8>) {
    out.push(FIN | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// A close frame's payload: the code, then the reason (RFC 6455 §5.5.1).
fn close_payload(reason: CloseReason) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.reason.len());
    payload.extend_from_slice(&reason.code.to_be_bytes());
    payload.extend_from_slice(reason.reason.as_bytes());
    payload.into()
}

/// One piece of a batch: a frame (its header in the batch's header bytes) or bytes that are a
/// whole frame already.
struct Piece {
    /// The header's range in `Batch::headers` (empty for a frame given whole).
    header: (u32, u8),
    payload: Bytes,
}

/// Where frames are written: the socket's writing half (or, in tests, a byte buffer).
pub(crate) trait Sink: Unpin {
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Sink for WriteHalf {
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        WriteHalf::poll_write_vectored(self, cx, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        WriteHalf::poll_flush(self, cx)
    }
}

/// The writing half of a WebSocket and the batch it is writing.
///
/// The batch outlives a cancelled [`FrameWriter::flush`]: a frame is never cut by what follows
/// it (a close frame waits for the rest of the batch).
pub(crate) struct FrameWriter<W = WriteHalf> {
    io: W,
    pieces: Vec<Piece>,
    headers: Vec<u8>,
    /// Bytes of the batch: in all, and written so far.
    len: usize,
    written: usize,
}

impl<W: Sink> FrameWriter<W> {
    pub fn new(io: W) -> Self {
        Self {
            io,
            pieces: Vec::new(),
            headers: Vec::new(),
            len: 0,
            written: 0,
        }
    }

    /// Adds `item` to the batch.
    pub fn push(&mut self, item: Outgoing) {
        match item {
            Outgoing::Frame(frame) => self.frame(TEXT, frame),
            Outgoing::Ping => self.frame(PING, Bytes::new()),
            Outgoing::Raw(bytes) => {
                self.len += bytes.len();
                self.pieces.push(Piece {
                    header: (0, 0),
                    payload: bytes,
                });
            }
        }
    }

    /// Adds a close frame to the batch.
    pub fn push_close(&mut self, reason: CloseReason) {
        self.frame(CLOSE, close_payload(reason));
    }

    fn frame(&mut self, opcode: u8, payload: Bytes) {
        let start = self.headers.len();
        header(opcode, payload.len(), &mut self.headers);
        let header_len = self.headers.len() - start;
        self.len += header_len + payload.len();
        self.pieces.push(Piece {
            header: (start as u32, header_len as u8),
            payload,
        });
    }

    /// Whether the batch is full enough to be written now.
    pub fn is_full(&self) -> bool {
        self.len >= BATCH_BYTES || self.pieces.len() >= MAX_SLICES / 2
    }

    /// Writes the whole batch. Cancel-safe: what is not written yet stays in the batch.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.flush_noting(|_| {}).await
    }

    /// [`FrameWriter::flush`], telling `stalled` when the socket takes no more bytes (`true`,
    /// each time a write must wait) and when the batch is written (`false`).
    pub async fn flush_noting(&mut self, stalled: impl Fn(bool)) -> io::Result<()> {
        while self.written < self.len {
            let written = std::future::poll_fn(|cx| {
                let mut slices = Vec::with_capacity((2 * self.pieces.len()).min(MAX_SLICES));
                let mut skip = self.written;
                for piece in &self.pieces {
                    let (start, len) = (piece.header.0 as usize, piece.header.1 as usize);
                    for part in [&self.headers[start..start + len], &piece.payload[..]] {
                        if skip >= part.len() {
                            skip -= part.len();
                            continue;
                        }
                        slices.push(IoSlice::new(&part[skip..]));
                        skip = 0;
                    }
                    if slices.len() >= MAX_SLICES - 1 {
                        break;
                    }
                }
                match self.io.poll_write_vectored(cx, &slices) {
                    Poll::Ready(Ok(0)) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Pending => {
                        stalled(true);
                        Poll::Pending
                    }
                    polled => polled,
                }
            })
            .await?;
            self.written += written;
        }
        std::future::poll_fn(|cx| self.io.poll_flush(cx)).await?;
        stalled(false);
        self.clear();
        Ok(())
    }

    fn clear(&mut self) {
        self.pieces.clear();
        self.headers.clear();
        if self.pieces.capacity() > KEPT_FRAMES {
            self.pieces.shrink_to(KEPT_FRAMES);
            self.headers.shrink_to(4 * KEPT_FRAMES);
        }
        self.len = 0;
        self.written = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocket};
    use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};

    /// A socket that takes at most the next of `sizes` bytes per write (partial writes), and
    /// sometimes is not ready.
    struct Chunked {
        out: Vec<u8>,
        sizes: Vec<usize>,
        at: usize,
        pending: bool,
    }

    impl Sink for Chunked {
        fn poll_write_vectored(
            &mut self,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let size = self.sizes[self.at % self.sizes.len()];
            self.at += 1;
            if size == 0 && !self.pending {
                // Not writable now: try again later.
                self.pending = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.pending = false;
            let size = size.max(1);
            let mut left = size;
            for buf in bufs {
                let n = buf.len().min(left);
                self.out.extend_from_slice(&buf[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(size - left))
        }

        fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// The written bytes, for the client to read; what it answers (pongs) goes nowhere.
    struct ReadOnly(Cursor<Vec<u8>>);

    impl io::Read for ReadOnly {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl io::Write for ReadOnly {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[derive(Debug, Clone)]
    enum Item {
        Text(usize),
        Ping,
        Pong(usize),
        Close,
    }

    fn item() -> impl Strategy<Value = Item> {
        // Lengths at the header's boundaries (7-bit, 16-bit, 64-bit lengths) and in between.
        let len = prop_oneof![
            0..4usize,
            120..130usize,
            65_530..65_540usize,
            Just(70_000usize),
            0..2_000usize,
        ];
        prop_oneof![
            6 => len.prop_map(Item::Text),
            1 => Just(Item::Ping),
            1 => (0..100usize).prop_map(Item::Pong),
            1 => Just(Item::Close),
        ]
    }

    fn text(i: usize, len: usize) -> String {
        (0..len)
            .map(|j| char::from(b'a' + ((i + j) % 26) as u8))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// What the writer writes, however the socket cuts it, is what a client-side
        /// WebSocket (tungstenite) reads: every message, in order, byte for byte.
        #[test]
        fn a_client_reads_every_frame_as_written(
            batches in proptest::collection::vec(proptest::collection::vec(item(), 1..20), 1..6),
            sizes in proptest::collection::vec(prop_oneof![1 => Just(0usize), 1 => 1..9usize, 4 => 500..70_000usize], 1..8),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut writer = FrameWriter::new(Chunked { out: Vec::new(), sizes, at: 0, pending: false });
            let mut expected = Vec::new();
            let mut i = 0;
            'batches: for batch in &batches {
                for item in batch {
                    i += 1;
                    match item {
                        Item::Text(len) => {
                            let t = text(i, *len);
                            writer.push(Outgoing::Frame(Bytes::from(t.clone())));
                            expected.push(Message::text(t));
                        }
                        Item::Ping => {
                            writer.push(Outgoing::Ping);
                            expected.push(Message::Ping(Bytes::new()));
                        }
                        Item::Pong(len) => {
                            // A whole frame given as bytes, as the reader hands on pongs.
                            let payload = Bytes::from(text(i, *len));
                            let mut raw = Vec::new();
                            header(0xA, payload.len(), &mut raw);
                            raw.extend_from_slice(&payload);
                            writer.push(Outgoing::Raw(raw.into()));
                            expected.push(Message::Pong(payload));
                        }
                        Item::Close => {
                            writer.push_close(CloseReason::SLOW_CONSUMER);
                            expected.push(Message::Close(Some(CloseFrame {
                                code: CloseCode::from(4008),
                                reason: CloseReason::SLOW_CONSUMER.reason.into(),
                            })));
                            break 'batches;
                        }
                    }
                }
                runtime.block_on(writer.flush()).unwrap();
                prop_assert_eq!(writer.len, 0);
            }
            runtime.block_on(writer.flush()).unwrap();
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .max_message_size(None)
                .max_frame_size(None);
            let mut client = WebSocket::from_raw_socket(
                ReadOnly(Cursor::new(std::mem::take(&mut writer.io.out))),
                Role::Client,
                Some(config),
            );
            for want in expected {
                let got = client.read().unwrap();
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn headers_use_the_shortest_length_encoding() {
        for (len, want) in [
            (0, vec![0x81, 0]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65_535, vec![0x81, 126, 0xff, 0xff]),
            (65_536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            header(TEXT, len, &mut out);
            assert_eq!(out, want, "length {len}");
        }
    }
}
