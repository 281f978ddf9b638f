//! WebSocket framing for the load generator: builds the one masked client frame that is re-sent, and parses the server's unmasked frames incrementally (split across reads, several per read). The header codec and masking are wsd's own (`wsd-wire`).

use wsd_wire::frame::{
    Decoded, FrameHeader, MAX_HEADER, Opcode, decode_header, write_masked_frame,
};

const OP_TEXT: u8 = Opcode::Text as u8;
const OP_BINARY: u8 = Opcode::Binary as u8;
const OP_CONTINUATION: u8 = Opcode::Continuation as u8;
const OP_CLOSE: u8 = Opcode::Close as u8;
const OP_PING: u8 = Opcode::Ping as u8;
const OP_PONG: u8 = Opcode::Pong as u8;

/// Fixed mask key of every client frame (any key is valid; a fixed one lets the frame be built once).
pub const MASK_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The payload the load generator sends: `size` printable ASCII bytes, so it is valid UTF-8 for text frames.
pub fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Appends one complete client frame (FIN set, masked with [`MASK_KEY`]) to `out`.
pub fn push_client_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    write_masked_frame(out, true, opcode, MASK_KEY, payload);
}

/// One complete client frame (FIN set, masked with [`MASK_KEY`]), payload pre-masked.
pub fn client_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + MAX_HEADER);
    push_client_frame(&mut out, opcode, payload);
    out
}

/// Why the server's byte stream was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The server set the MASK bit (servers must not mask).
    Masked,
    /// RSV bits set although no extension was negotiated.
    Reserved,
    /// Unknown opcode.
    Opcode(u8),
    /// A control frame that is fragmented or longer than 125 bytes.
    BadControl,
    /// A continuation frame without a message in progress, or a new data frame inside one.
    Fragmentation,
    /// A data message whose opcode differs from the one sent.
    WrongType(u8),
    /// A data message whose total length differs from the one sent.
    WrongLength(u64),
    /// A 64-bit payload length with its top bit set.
    LengthOverflow,
    /// A compressed message that does not inflate.
    Inflate,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Masked => write!(f, "server frame is masked"),
            Self::Reserved => write!(f, "RSV bits set"),
            Self::Inflate => write!(f, "invalid compressed message"),
            Self::Opcode(op) => write!(f, "unknown opcode {op:#x}"),
            Self::BadControl => write!(f, "fragmented or oversized control frame"),
            Self::Fragmentation => write!(f, "bad fragmentation sequence"),
            Self::WrongType(op) => write!(f, "echo has opcode {op:#x}, not the one sent"),
            Self::WrongLength(n) => write!(f, "echo has {n} payload bytes, not the number sent"),
            Self::LengthOverflow => write!(f, "payload length out of range"),
        }
    }
}

/// What one [`ServerFrameParser::feed`] call found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    /// Complete data messages of the expected type and length.
    pub messages: u32,
    /// A close frame was seen (bytes after it are not parsed).
    pub close: bool,
    /// The stream is invalid (bytes after the error are not parsed).
    pub error: Option<FrameError>,
}

/// Incremental parser of server-to-client frames that only keeps header bytes, never payload.
#[derive(Debug, Clone)]
pub struct ServerFrameParser {
    expected_opcode: u8,
    expected_len: u64,
    /// A header cut by a read boundary: its bytes so far.
    hdr: [u8; MAX_HEADER],
    hdr_len: usize,
    /// Payload bytes of the current frame still to skip.
    remaining: u64,
    /// Whether the current frame's payload is being skipped (header done).
    in_payload: bool,
    cur_fin: bool,
    cur_control: bool,
    /// Opcode of the data message in progress (0 = none) and its bytes so far.
    msg_opcode: u8,
    msg_len: u64,
    /// permessage-deflate offered: RSV1 marks a compressed message, collected and inflated to be
    /// checked (only compressed messages are kept).
    deflate: bool,
    compressed: bool,
    zbuf: Vec<u8>,
}

impl ServerFrameParser {
    /// A parser that accepts data messages of `expected_opcode` with exactly `expected_len` payload bytes.
    pub fn new(expected_opcode: Opcode, expected_len: u64) -> Self {
        Self {
            expected_opcode: expected_opcode as u8,
            expected_len,
            hdr: [0; MAX_HEADER],
            hdr_len: 0,
            remaining: 0,
            in_payload: false,
            cur_fin: false,
            cur_control: false,
            msg_opcode: 0,
            msg_len: 0,
            deflate: false,
            compressed: false,
            zbuf: Vec::new(),
        }
    }

    /// Accepts compressed messages (RSV1) too, checking their inflated length.
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }

    /// Parses `data`, the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) -> Feed {
        let mut feed = Feed::default();
        while !data.is_empty() {
            if self.in_payload {
                let take = self.remaining.min(data.len() as u64);
                if self.compressed && !self.cur_control {
                    self.zbuf.extend_from_slice(&data[..take as usize]);
                }
                self.remaining -= take;
                data = &data[take as usize..];
                if self.remaining == 0 {
                    self.in_payload = false;
                    if let Err(e) = self.end_frame(&mut feed) {
                        feed.error = Some(e);
                        return feed;
                    }
                }
                continue;
            }
            let header = match self.next_header(data) {
                Ok(Some((header, used))) => {
                    data = &data[used..];
                    header
                }
                Ok(None) => break,
                Err(e) => {
                    feed.error = Some(e);
                    return feed;
                }
            };
            match self.start_frame(header) {
                Ok(true) => {
                    feed.close = true;
                    return feed;
                }
                Ok(false) => {}
                Err(e) => {
                    feed.error = Some(e);
                    return feed;
                }
            }
            if self.remaining == 0 {
                if let Err(e) = self.end_frame(&mut feed) {
                    feed.error = Some(e);
                    return feed;
                }
            } else {
                self.in_payload = true;
            }
        }
        feed
    }

    /// The header at the start of the stream's next bytes `data` (completing one cut by the last
    /// read) and how many bytes of `data` it took; `None` when `data` ends inside it (then every
    /// byte of `data` is kept).
    fn next_header(&mut self, data: &[u8]) -> Result<Option<(FrameHeader, usize)>, FrameError> {
        let had = self.hdr_len;
        let decoded = if had == 0 {
            decode_header(data)
        } else {
            let take = (MAX_HEADER - had).min(data.len());
            self.hdr[had..had + take].copy_from_slice(&data[..take]);
            self.hdr_len += take;
            decode_header(&self.hdr[..self.hdr_len])
        };
        match decoded.map_err(|_| FrameError::LengthOverflow)? {
            Decoded::Header(header, len) => {
                self.hdr_len = 0;
                Ok(Some((header, len - had)))
            }
            Decoded::Incomplete => {
                if had == 0 {
                    // Shorter than a header, so it fits.
                    self.hdr[..data.len()].copy_from_slice(data);
                    self.hdr_len = data.len();
                }
                Ok(None)
            }
        }
    }

    /// Validates a complete header; returns `Ok(true)` for a close frame.
    fn start_frame(&mut self, header: FrameHeader) -> Result<bool, FrameError> {
        if header.mask.is_some() {
            return Err(FrameError::Masked);
        }
        let rsv1 =
            self.deflate && header.rsv == 0b100 && matches!(header.opcode, OP_TEXT | OP_BINARY);
        if header.rsv != 0 && !rsv1 {
            return Err(FrameError::Reserved);
        }
        let len = header.payload_len;
        let fin = header.fin;
        let opcode = header.opcode;
        self.cur_fin = fin;
        self.remaining = len;
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > 125 {
                    return Err(FrameError::BadControl);
                }
                self.cur_control = true;
                Ok(opcode == OP_CLOSE)
            }
            OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                self.cur_control = false;
                if opcode == OP_CONTINUATION {
                    if self.msg_opcode == 0 {
                        return Err(FrameError::Fragmentation);
                    }
                } else {
                    if self.msg_opcode != 0 {
                        return Err(FrameError::Fragmentation);
                    }
                    if opcode != self.expected_opcode {
                        return Err(FrameError::WrongType(opcode));
                    }
                    self.msg_opcode = opcode;
                    self.msg_len = 0;
                    self.compressed = rsv1;
                }
                self.msg_len = self.msg_len.saturating_add(len);
                if !self.compressed && self.msg_len > self.expected_len {
                    return Err(FrameError::WrongLength(self.msg_len));
                }
                Ok(false)
            }
            op => Err(FrameError::Opcode(op)),
        }
    }

    /// Called when a frame's payload has been consumed.
    fn end_frame(&mut self, feed: &mut Feed) -> Result<(), FrameError> {
        if self.cur_control || !self.cur_fin {
            return Ok(());
        }
        self.msg_opcode = 0;
        if std::mem::take(&mut self.compressed) {
            let inflated = crate::inflate::with_inflated(&self.zbuf, <[u8]>::len)
                .map_err(|_| FrameError::Inflate)?;
            self.zbuf.clear();
            self.msg_len = inflated as u64;
        }
        if self.msg_len != self.expected_len {
            return Err(FrameError::WrongLength(self.msg_len));
        }
        feed.messages += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsd_wire::frame::Opcode::{Binary, Close, Continuation, Ping, Pong, Text};

    /// An unmasked server frame, as a server would send it.
    fn server_frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut h = [0u8; MAX_HEADER];
        let n = wsd_wire::frame::encode_header(&mut h, fin, opcode, None, payload.len() as u64);
        let mut f = h[..n].to_vec();
        f.extend_from_slice(payload);
        f
    }

    fn feed_all(p: &mut ServerFrameParser, parts: &[&[u8]]) -> Feed {
        let mut total = Feed::default();
        for part in parts {
            let f = p.feed(part);
            total.messages += f.messages;
            total.close |= f.close;
            if f.error.is_some() {
                total.error = f.error;
            }
        }
        total
    }

    #[test]
    fn client_frame_headers_and_masking() {
        for (size, hdr) in [
            (0, 6),
            (20, 6),
            (125, 6),
            (126, 8),
            (16384, 8),
            (70_000, 14),
        ] {
            let p = payload(size);
            let f = client_frame(Binary, &p);
            assert_eq!(f.len(), size + hdr, "size {size}");
            assert_eq!(f[0], 0x82);
            assert_eq!(f[1] & 0x80, 0x80);
            let key = &f[hdr - 4..hdr];
            assert_eq!(key, MASK_KEY);
            let unmasked: Vec<u8> = f[hdr..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(unmasked, p);
        }
        assert!(std::str::from_utf8(&payload(1000)).is_ok());
        assert_eq!(client_frame(Text, b"x")[0], 0x81);
    }

    #[test]
    fn every_split_offset_counts_exactly() {
        for size in [0usize, 20, 125, 126, 300, 65_535, 65_536] {
            let p = payload(size);
            // Ping, two messages, a fragmented message, a pong, one more message.
            let mut stream = server_frame(true, Ping, b"hi");
            stream.extend(server_frame(true, Text, &p));
            stream.extend(server_frame(true, Text, &p));
            let half = size / 2;
            stream.extend(server_frame(false, Text, &p[..half]));
            stream.extend(server_frame(true, Continuation, &p[half..]));
            stream.extend(server_frame(true, Pong, b""));
            stream.extend(server_frame(true, Text, &p));
            let step = if stream.len() > 2000 { 97 } else { 1 };
            let mut offsets: Vec<usize> = (0..=stream.len()).step_by(step).collect();
            // Always cover every byte of the headers at both ends.
            offsets.extend(0..20.min(stream.len()));
            offsets.extend(stream.len().saturating_sub(20)..=stream.len());
            for at in offsets {
                let mut parser = ServerFrameParser::new(Text, size as u64);
                let (a, b) = stream.split_at(at);
                let f = feed_all(&mut parser, &[a, b]);
                assert_eq!(
                    f,
                    Feed {
                        messages: 4,
                        close: false,
                        error: None
                    },
                    "size {size} split at {at}"
                );
            }
            if size <= 300 {
                let mut parser = ServerFrameParser::new(Text, size as u64);
                let bytes: Vec<&[u8]> = stream.chunks(1).collect();
                assert_eq!(feed_all(&mut parser, &bytes).messages, 4, "byte by byte");
            }
        }
    }

    #[test]
    fn three_way_splits_of_small_frames() {
        let p = payload(20);
        let mut stream = server_frame(true, Binary, &p);
        stream.extend(server_frame(true, Binary, &p));
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let mut parser = ServerFrameParser::new(Binary, 20);
                let f = feed_all(&mut parser, &[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!(f.messages, 2, "splits {i} {j}");
                assert_eq!(f.error, None);
            }
        }
    }

    #[test]
    fn rejects_wrong_length_type_mask_and_sees_close() {
        let p = payload(20);
        let mut parser = ServerFrameParser::new(Text, 20);
        assert_eq!(
            parser.feed(&server_frame(true, Text, &p[..19])).error,
            Some(FrameError::WrongLength(19))
        );
        let mut parser = ServerFrameParser::new(Text, 20);
        let mut long = payload(21);
        long[0] = b'z';
        assert_eq!(
            parser.feed(&server_frame(true, Text, &long)).error,
            Some(FrameError::WrongLength(21))
        );
        let mut parser = ServerFrameParser::new(Text, 20);
        assert_eq!(
            parser.feed(&server_frame(true, Binary, &p)).error,
            Some(FrameError::WrongType(OP_BINARY))
        );
        let mut parser = ServerFrameParser::new(Text, 20);
        assert_eq!(
            parser.feed(&client_frame(Text, &p)).error,
            Some(FrameError::Masked)
        );
        let mut parser = ServerFrameParser::new(Text, 20);
        assert_eq!(
            parser.feed(&server_frame(true, Continuation, &p)).error,
            Some(FrameError::Fragmentation)
        );
        let mut parser = ServerFrameParser::new(Text, 20);
        let mut huge = vec![0x81, 0x7f, 0x80];
        huge.extend_from_slice(&[0; 7]);
        for (at, len) in [(0, 10), (1, 9), (2, 8)] {
            assert_eq!(parser.feed(&huge[..at]).error, None);
            assert_eq!(
                parser.feed(&huge[at..at + len]).error,
                Some(FrameError::LengthOverflow),
                "split at {at}"
            );
            parser = ServerFrameParser::new(Text, 20);
        }
        let mut s = server_frame(true, Text, &p);
        s.extend(server_frame(true, Close, &[0x03, 0xe8]));
        s.extend(server_frame(true, Text, &p));
        let f = parser.feed(&s);
        assert_eq!((f.messages, f.close, f.error), (1, true, None));
    }
}
