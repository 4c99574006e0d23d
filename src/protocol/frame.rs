//! Length-prefixed message framing without copying payloads.

use bytes::{Buf, Bytes, BytesMut};

/// PostgreSQL's own cap on a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// One protocol message: its raw bytes (tag, length, body) so it can be forwarded untouched.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The whole message as received, header included.
    pub raw: Bytes,
}

impl Frame {
    /// The message type byte (`Q`, `P`, `Z`, …); 0 only for an empty frame.
    #[inline]
    pub fn tag(&self) -> u8 {
        self.raw.first().copied().unwrap_or(0)
    }

    /// The payload after tag and length.
    #[inline]
    pub fn body(&self) -> &[u8] {
        self.raw.get(5..).unwrap_or(&[])
    }
}

/// A borrowed protocol message: the same accessors as [`Frame`], for frames handled in place
/// in a read buffer (the server → client hot path).
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    /// The whole message, header included.
    pub raw: &'a [u8],
}

impl<'a> FrameRef<'a> {
    /// The message type byte (`Q`, `P`, `Z`, …); 0 only for an empty frame.
    #[inline]
    pub fn tag(&self) -> u8 {
        self.raw.first().copied().unwrap_or(0)
    }

    /// The payload after tag and length.
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        self.raw.get(5..).unwrap_or(&[])
    }
}

/// A frame that cannot be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length field is below its own size.
    #[error("invalid message length {0}")]
    BadLength(i64),
    /// The message is larger than allowed.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Declared length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
}

/// Splits one complete typed message off the front of `buf`, or `None` if it is incomplete.
#[inline]
pub fn try_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    let Some(len) = complete_len(buf, max)? else {
        return Ok(None);
    };
    Ok(Some(Frame {
        raw: buf.split_to(len).freeze(),
    }))
}

/// The size of the complete typed message at the front of `buf`, or `None` if it is
/// incomplete, in which case room for all of it is reserved (one read can then finish it).
#[inline]
pub fn complete_len(buf: &mut BytesMut, max: usize) -> Result<Option<usize>, FrameError> {
    let Some(len) = peek_len(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < len {
        if buf.capacity() < len {
            buf.reserve(len - buf.len());
        }
        return Ok(None);
    }
    Ok(Some(len))
}

/// The total size (tag + length field + body) of the typed message at the front of `buf`.
#[inline]
pub fn peek_len(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(hdr) = buf.get(1..5) else {
        return Ok(None);
    };
    let declared = i32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as i64;
    if declared < 4 {
        return Err(FrameError::BadLength(declared));
    }
    let total = declared as usize + 1;
    if total > max {
        return Err(FrameError::TooLarge { len: total, max });
    }
    Ok(Some(total))
}

/// The size of the complete typed message at the front of `buf`; `None` while it is
/// incomplete. For walking frames in place (nothing is reserved).
#[inline]
pub fn complete_frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    Ok(peek_len(buf, max)?.filter(|&n| buf.len() >= n))
}

/// Whether `buf` holds at least one complete typed message.
#[inline]
pub fn has_complete_frame(buf: &[u8], max: usize) -> bool {
    matches!(complete_frame_len(buf, max), Ok(Some(_)))
}

/// Splits an untyped startup-phase packet (length, then payload) off `buf`.
pub fn try_startup_packet(buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
    let Some(hdr) = buf.get(0..4) else {
        return Ok(None);
    };
    let declared = i32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as i64;
    if declared < 8 {
        return Err(FrameError::BadLength(declared));
    }
    let len = declared as usize;
    if len > MAX_STARTUP_PACKET {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_STARTUP_PACKET,
        });
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    Ok(Some(packet.freeze()))
}

impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_without_copy_and_wait_for_more() {
        let mut b = BytesMut::new();
        b.extend_from_slice(b"Q\0\0\0\x0bselect\0Z\0\0");
        let f = try_frame(&mut b, 1024).unwrap().unwrap();
        assert_eq!(f.tag(), b'Q');
        assert_eq!(f.body(), b"select\0");
        assert!(try_frame(&mut b, 1024).unwrap().is_none());
        b.extend_from_slice(b"\0\x05I");
        let z = try_frame(&mut b, 1024).unwrap().unwrap();
        assert_eq!(z.body(), b"I");
        assert!(b.is_empty());
    }

    #[test]
    fn lying_lengths_are_errors() {
        let mut b = BytesMut::from(&b"Q\0\0\0\x02"[..]);
        assert_eq!(
            try_frame(&mut b, 1024),
            Err(FrameError::BadLength(2)).map(|_: Option<Frame>| None)
        );
        let mut b = BytesMut::from(&b"Q\x7f\xff\xff\xff"[..]);
        assert!(matches!(
            try_frame(&mut b, 1024),
            Err(FrameError::TooLarge { .. })
        ));
        let mut b = BytesMut::from(&b"Q\xff\xff\xff\xff"[..]);
        assert!(matches!(
            try_frame(&mut b, 1024),
            Err(FrameError::BadLength(-1))
        ));
    }

    #[test]
    fn startup_packets_are_bounded() {
        let mut b = BytesMut::from(&b"\0\0\x27\x11"[..]);
        assert!(matches!(
            try_startup_packet(&mut b),
            Err(FrameError::TooLarge { .. })
        ));
        let mut b = BytesMut::from(&b"\0\0\0\x03"[..]);
        assert!(try_startup_packet(&mut b).is_err());
        let mut b = BytesMut::from(&b"\0\0\0\x08\x04\xd2\x16\x2f"[..]);
        assert_eq!(
            &try_startup_packet(&mut b).unwrap().unwrap()[..],
            b"\x04\xd2\x16\x2f"
        );
    }
}
