//! TCP line framing as a tokio-util [`Decoder`]: a line ends at `\n`, `\r\n` or a lone `\r` (some
//! clients end lines with `\r` alone), with a length cap that reports an over-long line once and
//! then skips it, keeping the connection usable. tokio-util's own `LinesCodec` ends the stream
//! after such an error and rejects invalid UTF-8, which is why chatd has its own. [`datagram_lines`]
//! applies the same line ends to a UDP datagram.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// One framed item from a TCP stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its terminator; may be invalid UTF-8.
    Line(BytesMut),
    /// A line went past the limit; it is being (or has been) discarded up to its end.
    TooLong,
}

/// Splits a byte stream into lines of at most `max_len` bytes.
#[derive(Debug, Clone)]
pub struct LineCodec {
    max_len: usize,
    /// How far the buffer has already been searched for a line end, so a slow trickle is not
    /// rescanned.
    scanned: usize,
    /// True while skipping the rest of an over-long line.
    discarding: bool,
    /// The last line ended at a `\r`: a `\n` right after it is the rest of the same `\r\n`, even
    /// when it arrives in a later read. The line is not held back waiting for it, so a client that
    /// ends lines with `\r` alone is answered at once.
    after_cr: bool,
}

impl LineCodec {
    /// A codec accepting lines of up to `max_len` bytes (terminator excluded).
    pub fn new(max_len: usize) -> Self {
        LineCodec {
            max_len,
            scanned: 0,
            discarding: false,
            after_cr: false,
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
        // `after_cr` stays: with nothing pending, the last line ended at a `\r`, and a `\n` coming
        // next is still the rest of that `\r\n`.
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
        let line = buf.split();
        // `decode` never holds more than `max_len` bytes of a partial line; checked again here so
        // the cap does not depend on that.
        if line.len() > self.max_len {
            return Ok(Some(Frame::TooLong));
        }
        Ok(Some(Frame::Line(line)))
    }
}

/// The lines one datagram carries, split at the same line ends as TCP (`\n`, `\r\n` or a lone
/// `\r`); one trailing line end is dropped. Always at least one line, possibly empty, so an empty
/// datagram still counts (as a heartbeat, or to join).
pub fn datagram_lines(datagram: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = datagram.strip_suffix(b"\n").unwrap_or(datagram);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let text = rest?;
        match memchr::memchr2(b'\n', b'\r', text) {
            Some(end) => {
                let mut next = end + 1;
                if text[end] == b'\r' && text.get(next) == Some(&b'\n') {
                    next += 1;
                }
                rest = Some(&text[next..]);
                Some(&text[..end])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        loop {
            if self.after_cr && !buf.is_empty() {
                // The byte after a line-ending `\r`: a `\n` there completes that `\r\n`.
                if buf[0] == b'\n' {
                    buf.advance(1);
                }
                self.after_cr = false;
            }
            let end = memchr::memchr2(b'\n', b'\r', &buf[self.scanned..]).map(|i| i + self.scanned);
            match end {
                Some(end) => {
                    self.scanned = 0;
                    self.after_cr = buf[end] == b'\r';
                    if self.discarding {
                        self.discarding = false;
                        buf.advance(end + 1);
                        continue;
                    }
                    let mut line = buf.split_to(end + 1);
                    line.truncate(end);
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
                // Every line end ends a line by itself (a `\r` included), so nothing past the cap
                // need be kept.
                None if buf.len() > self.max_len => {
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
        // A last line without its end (netcat's Ctrl-D mid-line) still counts.
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
    fn lone_cr_ends_a_line() {
        let mut codec = LineCodec::new(100);
        let frames = decode_all(&mut codec, &[b"a\rb\r\rc"]);
        assert_eq!(frames, vec![line(b"a"), line(b"b"), line(b""), line(b"c")]);
    }

    #[test]
    fn crlf_split_across_reads_is_one_line_end() {
        let mut codec = LineCodec::new(100);
        let mut buf = BytesMut::from(&b"a\r"[..]);
        // The line is complete at the `\r`: it is not held back waiting for a `\n`.
        assert_eq!(codec.decode(&mut buf).expect("decode"), Some(line(b"a")));
        assert!(!codec.has_partial(&buf));
        buf.extend_from_slice(b"\nb\n");
        assert_eq!(codec.decode(&mut buf).expect("decode"), Some(line(b"b")));
        assert_eq!(codec.decode(&mut buf).expect("decode"), None);
        // Byte by byte too.
        let mut codec = LineCodec::new(100);
        assert_eq!(
            decode_all(
                &mut codec,
                &[b"x", b"\r", b"\n", b"\r", b"\n", b"y\r", b"\n"]
            ),
            vec![line(b"x"), line(b""), line(b"y")]
        );
    }

    #[test]
    fn a_cr_ends_an_over_long_line_and_its_lf_is_not_a_line() {
        let mut codec = LineCodec::new(4);
        let frames = decode_all(&mut codec, &[b"123456", b"\r", b"\nok\r\n"]);
        assert_eq!(frames, vec![Frame::TooLong, line(b"ok")]);
    }

    #[test]
    fn a_partial_line_is_held_until_the_limit_and_no_further() {
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"1234"[..]);
        assert_eq!(codec.decode(&mut buf).expect("decode"), None);
        assert!(codec.has_partial(&buf));
        buf.extend_from_slice(b"5");
        assert_eq!(
            codec.decode(&mut buf).expect("decode"),
            Some(Frame::TooLong)
        );
        assert!(buf.is_empty());
        // Still part of the over-long line, though nothing of it is kept.
        assert!(codec.has_partial(&buf));
    }

    #[test]
    fn end_line_takes_a_partial_line_and_the_stream_goes_on() {
        let mut codec = LineCodec::new(10);
        let mut buf = BytesMut::from(&b"one\ntw"[..]);
        assert_eq!(codec.end_line(&mut buf).expect("end"), Some(line(b"one")));
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
    fn end_line_after_a_cr_has_nothing_to_end() {
        let mut codec = LineCodec::new(10);
        let mut buf = BytesMut::from(&b"a\r"[..]);
        assert_eq!(codec.end_line(&mut buf).expect("end"), Some(line(b"a")));
        assert_eq!(codec.end_line(&mut buf).expect("end"), None);
        // The `\n` that follows, however late, still belongs to that `\r`.
        buf.extend_from_slice(b"\nb\n");
        assert_eq!(codec.decode(&mut buf).expect("decode"), Some(line(b"b")));
    }

    #[test]
    fn end_line_ends_the_skipping_of_an_over_long_line() {
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"123456"[..]);
        assert_eq!(
            codec.decode(&mut buf).expect("decode"),
            Some(Frame::TooLong)
        );
        assert_eq!(codec.end_line(&mut buf).expect("end"), None);
        assert!(!codec.has_partial(&buf));
        buf.extend_from_slice(b"ok\n");
        assert_eq!(codec.decode(&mut buf).expect("decode"), Some(line(b"ok")));
    }

    #[test]
    fn datagram_lines_split_at_every_line_end() {
        let lines = |d: &'static [u8]| datagram_lines(d).collect::<Vec<&[u8]>>();
        assert_eq!(lines(b"hi"), vec![&b"hi"[..]]);
        assert_eq!(lines(b"hi\n"), vec![&b"hi"[..]]);
        assert_eq!(lines(b"hi\r\n"), vec![&b"hi"[..]]);
        assert_eq!(lines(b"hi\r"), vec![&b"hi"[..]]);
        assert_eq!(lines(b""), vec![&b""[..]]);
        assert_eq!(lines(b"\n"), vec![&b""[..]]);
        assert_eq!(
            lines(b"first line\nsecond line\n"),
            vec![&b"first line"[..], b"second line"]
        );
        assert_eq!(
            lines(b"a\rb\r\nc\n\nd"),
            vec![&b"a"[..], b"b", b"c", b"", b"d"]
        );
    }

    #[test]
    fn discarded_tail_at_eof_is_dropped() {
        let mut codec = LineCodec::new(2);
        assert_eq!(decode_all(&mut codec, &[b"abcdef"]), vec![Frame::TooLong]);
    }
}
