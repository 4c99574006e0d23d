//! `PqStream`: a socket that speaks only in protocol frames.
//!
//! It deliberately does not implement `AsyncRead`/`AsyncWrite` (STYLE habit 5): bytes leave it
//! only as whole frames, and everything written is batched in `wbuf` until `flush`.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::frame::{self, Frame, FrameError};

/// Any byte stream a session can run over (plain TCP or TLS).
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> ByteStream for T {}

/// A boxed byte stream: TCP, TLS over TCP, or a test duplex.
pub type BoxStream = Box<dyn ByteStream>;

/// An I/O failure or a framing violation.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer sent a frame that cannot be accepted.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// The peer closed the connection.
    #[error("connection closed")]
    Closed,
}

/// A framed protocol stream with a read and a write buffer.
pub struct PqStream {
    io: BoxStream,
    /// Bytes read but not yet framed.
    rbuf: BytesMut,
    /// Frames queued for the next `flush`.
    wbuf: BytesMut,
    /// Largest message accepted from this peer.
    max_message: usize,
    /// How much room to make before a read: small for idle clients, doubled (up to
    /// [`MAX_READ_CHUNK`]) whenever a read fills all the room it had.
    read_chunk: usize,
    /// The read buffer grew past [`KEEP_BUFFER`] for a large message: drop it once it is
    /// empty, so an idle connection does not keep the largest message it ever sent.
    oversized: bool,
}

/// Buffers larger than this are freed once empty instead of kept for reuse: a one-off large
/// message (a 1 MiB statement) must not cost its size for the rest of the session.
const KEEP_BUFFER: usize = 256 * 1024;

/// Room made for the first read of a client stream: a short query fits, and 10,000 idle
/// clients cost 5 MiB of read buffers rather than 20.
pub const CLIENT_READ_CHUNK: usize = 512;

/// Room made for the first read of an upstream connection (result sets; few connections).
pub const SERVER_READ_CHUNK: usize = 8192;

/// The read chunk stops doubling here.
const MAX_READ_CHUNK: usize = 64 * 1024;

/// Below this much free room, a read first reserves `read_chunk` more.
const MIN_READ_ROOM: usize = 256;

impl PqStream {
    /// Wraps a stream; `rbuf` may hold bytes already read during the handshake.
    /// `read_chunk` is [`CLIENT_READ_CHUNK`] or [`SERVER_READ_CHUNK`].
    pub fn new(io: BoxStream, rbuf: BytesMut, max_message: usize, read_chunk: usize) -> Self {
        Self {
            io,
            rbuf,
            // Grown on first use: an idle session should cost a few KiB, not a page of buffers.
            wbuf: BytesMut::new(),
            max_message,
            read_chunk: read_chunk.clamp(MIN_READ_ROOM, MAX_READ_CHUNK),
            oversized: false,
        }
    }

    /// Reads until one whole frame is available. Cancel-safe: partial reads stay buffered.
    pub async fn read_frame(&mut self) -> Result<Frame, StreamError> {
        loop {
            if let Some(f) = frame::try_frame(&mut self.rbuf, self.max_message)? {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    /// Reads until at least one whole frame is buffered (then walk it with
    /// [`PqStream::take_read_buffer`]). Cancel-safe: partial reads stay buffered.
    pub async fn wait_frame(&mut self) -> Result<(), StreamError> {
        loop {
            if frame::complete_len(&mut self.rbuf, self.max_message)?.is_some() {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// Lends the read buffer out, so its frames can be handled by offset while the rest of the
    /// connection is borrowed mutably. Give it back with [`PqStream::restore_read_buffer`]
    /// (advanced past what was handled) before reading again.
    pub fn take_read_buffer(&mut self) -> BytesMut {
        std::mem::take(&mut self.rbuf)
    }

    /// Takes the read buffer back after [`PqStream::take_read_buffer`].
    pub fn restore_read_buffer(&mut self, buf: BytesMut) {
        debug_assert!(self.rbuf.is_empty(), "read while the buffer was lent out");
        self.rbuf = buf;
    }

    /// Largest message accepted from this peer.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// A frame already buffered, without reading.
    pub fn try_buffered_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        Ok(frame::try_frame(&mut self.rbuf, self.max_message)?)
    }

    /// Whether a whole frame is already buffered.
    pub fn has_buffered_frame(&self) -> bool {
        frame::has_complete_frame(&self.rbuf, self.max_message)
    }

    /// Bytes buffered but not yet framed.
    pub fn buffered_len(&self) -> usize {
        self.rbuf.len()
    }

    /// Reads more bytes into the buffer; `Closed` at EOF. Cancel-safe.
    pub async fn fill(&mut self) -> Result<usize, StreamError> {
        if self.rbuf.capacity() - self.rbuf.len() < MIN_READ_ROOM {
            self.rbuf.reserve(self.rbuf.len().max(self.read_chunk));
            self.oversized |= self.rbuf.capacity() > KEEP_BUFFER;
        }
        let room = self.rbuf.capacity() - self.rbuf.len();
        let n = self.io.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            return Err(StreamError::Closed);
        }
        if n == room && self.read_chunk < MAX_READ_CHUNK {
            // The peer had more to say than we had room for: read in bigger pieces.
            self.read_chunk *= 2;
        }
        Ok(n)
    }

    /// Frees an empty write buffer's memory (after one-off bursts such as the greeting), so an
    /// idle connection keeps none.
    pub fn release_write_buffer(&mut self) {
        if self.wbuf.is_empty() {
            self.wbuf = BytesMut::new();
        }
    }

    /// Frees the read buffer if a large message grew it and it is empty now (call when the
    /// peer is idle). Cheap when there is nothing to do.
    #[inline]
    pub fn release_large_read_buffer(&mut self) {
        if self.oversized && self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
            self.oversized = false;
        }
    }

    /// The write buffer, for builders in `messages` to append to.
    #[inline]
    pub fn out(&mut self) -> &mut BytesMut {
        &mut self.wbuf
    }

    /// Queues a frame's raw bytes for forwarding.
    #[inline]
    pub fn queue(&mut self, raw: &[u8]) {
        self.wbuf.extend_from_slice(raw);
    }

    /// Whether anything is waiting to be written.
    pub fn has_pending_writes(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Writes everything queued in one go.
    pub async fn flush(&mut self) -> Result<(), StreamError> {
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await?;
            if self.wbuf.capacity() > KEEP_BUFFER {
                self.wbuf = BytesMut::new();
            } else {
                self.wbuf.clear();
            }
        }
        self.io.flush().await?;
        Ok(())
    }

    /// Flushes and shuts the write side down (best effort).
    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
    }
}
