//! TCP line framing as a tokio-util [`Decoder`]: `\n`-terminated lines (a `\r` before it is
//! tolerated), with a length cap that reports an over-long line once and then skips it, keeping the
//! connection usable. tokio-util's own `LinesCodec` ends the stream after such an error and rejects
//! invalid UTF-8, which is why chatd has its own.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// One framed item from a TCP stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its terminator; may be invalid UTF-8.
    Line(BytesMut),
    /// A line went past the limit; it is being (or has been) discarded up to its newline.
    TooLong,
}

/// Splits a byte stream into lines of at most `max_len` bytes.
#[derive(Debug, Clone)]
pub struct LineCodec {
    max_len: usize,
    /// How far the buffer has already been searched for `\n`, so a slow trickle is not rescanned.
    scanned: usize,
    /// True while skipping the rest of an over-long line.
    discarding: bool,
}

impl LineCodec {
    /// A codec accepting lines of up to `max_len` bytes (terminator excluded).
    pub fn new(max_len: usize) -> Self {
        LineCodec {
            max_len,
            scanned: 0,
            discarding: false,
        }
    }

    /// True when part of a line has arrived without its end yet (held in `buf`, or being skipped
    /// as too long). Meaningful after [`Decoder::decode`] returned `None`.
    pub fn has_partial(&self, buf: &BytesMut) -> bool {
        self.discarding || !buf.is_empty()
    }

    /// The next frame, taking a partial line as complete when no whole line is left: for the end of
    /// the stream, and for a client whose line end is not coming (see `--partial-timeout`). The
    /// stream may go on afterwards; what follows starts a new line. Call until it returns `None`.
    pub fn end_line(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<Frame>> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        self.scanned = 0;
        if self.discarding {
            // Already reported as too long; the line ends here and nothing of it is delivered.
            self.discarding = false;
            buf.clear();
            return Ok(None);
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let line = strip_cr(buf.split());
        // `decode` holds up to `max_len + 1` bytes in case the last is a `\r` before the `\n`; no
        // `\n` is coming now, so the cap must be applied here too.
        if line.len() > self.max_len {
            return Ok(Some(Frame::TooLong));
        }
        Ok(Some(Frame::Line(line)))
    }
}

fn strip_cr(mut line: BytesMut) -> BytesMut {
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
    line
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        loop {
            let newline = memchr::memchr(b'\n', &buf[self.scanned..]).map(|i| i + self.scanned);
            match newline {
                Some(end) => {
                    self.scanned = 0;
                    if self.discarding {
                        self.discarding = false;
                        buf.advance(end + 1);
                        continue;
                    }
                    let mut line = buf.split_to(end + 1);
                    line.truncate(end);
                    let line = strip_cr(line);
                    if line.len() > self.max_len {
                        return Ok(Some(Frame::TooLong));
                    }
                    return Ok(Some(Frame::Line(line)));
                }
                None if self.discarding => {
                    buf.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
                // One extra byte of room for a `\r` that may precede the coming `\n`.
                None if buf.len() > self.max_len + 1 => {
                    buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    return Ok(Some(Frame::TooLong));
                }
                None => {
                    self.scanned = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        // A last line without a newline (netcat's Ctrl-D mid-line) still counts.
        self.end_line(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut LineCodec, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(frame) = codec.decode(&mut buf).expect("decode") {
                out.push(frame);
            }
        }
        while let Some(frame) = codec.decode_eof(&mut buf).expect("decode_eof") {
            out.push(frame);
        }
        out
    }

    fn line(s: &[u8]) -> Frame {
        Frame::Line(BytesMut::from(s))
    }

    #[test]
    fn splits_lines_and_tolerates_crlf() {
        let mut codec = LineCodec::new(100);
        let frames = decode_all(&mut codec, &[b"a\nb\r\n", b"c", b"d\n\n"]);
        assert_eq!(frames, vec![line(b"a"), line(b"b"), line(b"cd"), line(b"")]);
    }

    #[test]
    fn last_line_without_newline_is_kept() {
        let mut codec = LineCodec::new(100);
        assert_eq!(
            decode_all(&mut codec, &[b"x\ntail"]),
            vec![line(b"x"), line(b"tail")]
        );
    }

    #[test]
    fn long_line_in_one_piece_is_reported_and_skipped() {
        let mut codec = LineCodec::new(4);
        let frames = decode_all(&mut codec, &[b"12345\nok\n"]);
        assert_eq!(frames, vec![Frame::TooLong, line(b"ok")]);
    }

    #[test]
    fn long_line_trickling_in_is_reported_once() {
        let mut codec = LineCodec::new(4);
        let frames = decode_all(&mut codec, &[b"123", b"456", b"789", b"0\nok\n"]);
        assert_eq!(frames, vec![Frame::TooLong, line(b"ok")]);
    }

    #[test]
    fn exact_limit_with_crlf_fits() {
        let mut codec = LineCodec::new(4);
        let frames = decode_all(&mut codec, &[b"1234\r", b"\n"]);
        assert_eq!(frames, vec![line(b"1234")]);
    }

    #[test]
    fn last_line_one_byte_over_the_limit_is_too_long() {
        // Found by tests/fuzz_protocol.rs: this came out as a 5-byte Line.
        let mut codec = LineCodec::new(4);
        assert_eq!(
            decode_all(&mut codec, &[b"ok\n1234", b"5"]),
            vec![line(b"ok"), Frame::TooLong]
        );
        // The `\r` still does not count against the limit.
        let mut codec = LineCodec::new(4);
        assert_eq!(decode_all(&mut codec, &[b"1234\r"]), vec![line(b"1234")]);
    }

    #[test]
    fn end_line_takes_a_partial_line_and_the_stream_goes_on() {
        let mut codec = LineCodec::new(10);
        let mut buf = BytesMut::from(&b"one\ntw"[..]);
        assert_eq!(codec.end_line(&mut buf).expect("end"), Some(line(b"one")));
        assert!(codec.has_partial(&buf));
        assert_eq!(codec.end_line(&mut buf).expect("end"), Some(line(b"tw")));
        assert_eq!(codec.end_line(&mut buf).expect("end"), None);
        assert!(!codec.has_partial(&buf));
        // A `\n` arriving late is an empty line of its own, not the end of "tw" again.
        buf.extend_from_slice(b"\nthree\n");
        assert_eq!(codec.decode(&mut buf).expect("decode"), Some(line(b"")));
        assert_eq!(
            codec.decode(&mut buf).expect("decode"),
            Some(line(b"three"))
        );
    }

    #[test]
    fn end_line_ends_the_skipping_of_an_over_long_line() {
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"123456"[..]);
        assert_eq!(
            codec.decode(&mut buf).expect("decode"),
            Some(Frame::TooLong)
        );
        assert!(codec.has_partial(&buf));
        assert_eq!(codec.end_line(&mut buf).expect("end"), None);
        assert!(!codec.has_partial(&buf));
        buf.extend_from_slice(b"ok\n");
        assert_eq!(codec.decode(&mut buf).expect("decode"), Some(line(b"ok")));
    }

    #[test]
    fn discarded_tail_at_eof_is_dropped() {
        let mut codec = LineCodec::new(2);
        assert_eq!(decode_all(&mut codec, &[b"abcdef"]), vec![Frame::TooLong]);
    }
}
