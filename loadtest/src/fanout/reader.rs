//! Incremental reader of server frames that hands out whole message payloads: frames complete in a read are handed out in place, a frame cut by a read boundary is collected in a per-connection buffer, fragments are joined.

use wsd_wire::frame::{Decoded, decode_header};

/// Largest frame or message accepted from a server.
pub const MAX_MESSAGE: usize = 16 << 20;

/// One complete thing the server sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Text(&'a [u8]),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Close,
}

/// Reader state of one connection.
#[derive(Debug, Default)]
pub struct Reader {
    /// A frame cut by a read boundary: its header and the payload bytes that arrived so far.
    partial: Vec<u8>,
    /// Payload of a fragmented message so far, and its opcode (0 = none in progress).
    frag: Vec<u8>,
    frag_op: u8,
    /// The fragmented message in progress is compressed.
    frag_compressed: bool,
    /// permessage-deflate was agreed: RSV1 marks compressed messages, inflated before `f` sees them.
    pub deflate: bool,
    /// Bytes of data frames received (headers included): the bytes on the wire per delivery.
    pub wire_bytes: u64,
}

/// Header length and total frame length of the frame at the start of `b`, once its header is complete.
fn frame_len(b: &[u8]) -> Result<Option<(usize, usize)>, String> {
    let (header, hdr) = match decode_header(b) {
        Ok(Decoded::Incomplete) => return Ok(None),
        Ok(Decoded::Header(header, hdr)) => (header, hdr),
        Err(e) => return Err(format!("server frame: {e}")),
    };
    if header.mask.is_some() {
        return Err("server frame is masked".into());
    }
    match usize::try_from(header.payload_len) {
        Ok(len) if len <= MAX_MESSAGE => Ok(Some((hdr, hdr + len))),
        _ => Err(format!(
            "server frame of {} bytes is over the {MAX_MESSAGE}-byte limit",
            header.payload_len
        )),
    }
}

impl Reader {
    /// Parses `data`, the next bytes from the server, calling `f` for every complete event.
    pub fn feed<F>(&mut self, mut data: &[u8], f: &mut F) -> Result<(), String>
    where
        F: FnMut(Event<'_>) -> Result<(), String>,
    {
        if !self.partial.is_empty() {
            // Complete the cut frame a few bytes at a time (header first, then exactly its payload).
            loop {
                let need = match frame_len(&self.partial)? {
                    Some((_, total)) => total,
                    // The header is still incomplete: one byte at a time, so that no byte past
                    // a short frame's end is taken.
                    None => self.partial.len() + 1,
                };
                let take = (need - self.partial.len()).min(data.len());
                self.partial.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.partial.len() < need {
                    if data.is_empty() {
                        return Ok(());
                    }
                    continue;
                }
                if let Some((hdr, total)) = frame_len(&self.partial)?
                    && total == self.partial.len()
                {
                    let frame = std::mem::take(&mut self.partial);
                    self.frame(frame[0], &frame[hdr..], f)?;
                    self.partial = frame;
                    self.partial.clear();
                    break;
                }
            }
        }
        while !data.is_empty() {
            match frame_len(data)? {
                Some((hdr, total)) if total <= data.len() => {
                    self.frame(data[0], &data[hdr..total], f)?;
                    data = &data[total..];
                }
                _ => {
                    self.partial.extend_from_slice(data);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn frame<F>(&mut self, b0: u8, payload: &[u8], f: &mut F) -> Result<(), String>
    where
        F: FnMut(Event<'_>) -> Result<(), String>,
    {
        let rsv1 = b0 & 0x70 == 0x40 && self.deflate && matches!(b0 & 0x0f, 1 | 2);
        if b0 & 0x70 != 0 && !rsv1 {
            return Err("RSV bits set".into());
        }
        let fin = b0 & 0x80 != 0;
        if matches!(b0 & 0x0f, 0..=2) {
            let header = match payload.len() {
                0..=125 => 2,
                126..=0xffff => 4,
                _ => 10,
            };
            self.wire_bytes += (payload.len() + header) as u64;
        }
        match b0 & 0x0f {
            op @ (1 | 2) => {
                if self.frag_op != 0 {
                    return Err("new message inside a fragmented one".into());
                }
                if fin {
                    if rsv1 {
                        return crate::inflate::with_inflated(payload, |m| f(event(op, m)))?;
                    }
                    return f(event(op, payload));
                }
                self.frag_compressed = rsv1;
                self.frag_op = op;
                self.frag.clear();
                self.frag.extend_from_slice(payload);
                Ok(())
            }
            0 => {
                if self.frag_op == 0 {
                    return Err("continuation frame without a message".into());
                }
                if self.frag.len() + payload.len() > MAX_MESSAGE {
                    return Err("fragmented message over the limit".into());
                }
                self.frag.extend_from_slice(payload);
                if !fin {
                    return Ok(());
                }
                let op = std::mem::take(&mut self.frag_op);
                let msg = std::mem::take(&mut self.frag);
                let r = if std::mem::take(&mut self.frag_compressed) {
                    crate::inflate::with_inflated(&msg, |m| f(event(op, m))).and_then(|r| r)
                } else {
                    f(event(op, &msg))
                };
                self.frag = msg;
                r
            }
            8 => f(Event::Close),
            9 => f(Event::Ping(payload)),
            10 => Ok(()),
            op => Err(format!("unknown opcode {op:#x}")),
        }
    }
}

/// The event for a complete data message of opcode `op`.
fn event(op: u8, payload: &[u8]) -> Event<'_> {
    if op == 1 {
        Event::Text(payload)
    } else {
        Event::Binary(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![b0];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    fn collect(parts: &[&[u8]]) -> Result<Vec<String>, String> {
        let mut r = Reader::default();
        let mut got = Vec::new();
        for p in parts {
            r.feed(p, &mut |e| {
                got.push(match e {
                    Event::Text(t) => format!("T{}", t.len()),
                    Event::Binary(b) => format!("B{}", b.len()),
                    Event::Ping(p) => format!("P{}", p.len()),
                    Event::Close => "C".into(),
                });
                Ok(())
            })?;
        }
        Ok(got)
    }

    #[test]
    fn every_split_yields_the_same_events() {
        let mut s = server_frame(0x81, &[b'a'; 20]);
        s.extend(server_frame(0x89, b"hi"));
        s.extend(server_frame(0x01, &[b'b'; 100]));
        s.extend(server_frame(0x8a, b""));
        s.extend(server_frame(0x80, &[b'c'; 200]));
        s.extend(server_frame(0x82, &[0; 70_000]));
        s.extend(server_frame(0x81, b""));
        s.extend(server_frame(0x88, &[3, 232]));
        let want = ["T20", "P2", "T300", "B70000", "T0", "C"];
        assert_eq!(collect(&[&s]).expect("whole"), want);
        for at in (0..s.len()).step_by(7).chain(s.len() - 20..s.len()) {
            let (a, b) = s.split_at(at);
            assert_eq!(collect(&[a, b]).expect("split"), want, "split at {at}");
        }
        let bytes: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(collect(&bytes).expect("byte by byte"), want);
    }

    #[test]
    fn protocol_errors() {
        assert!(collect(&[&[0x81, 0x80, 0, 0, 0, 0]]).is_err(), "masked");
        assert!(collect(&[&[0xc1, 0x00]]).is_err(), "rsv");
        assert!(collect(&[&[0x80, 0x00]]).is_err(), "continuation first");
        assert!(
            collect(&[&[0x01, 0x00, 0x81, 0x00]]).is_err(),
            "interleaved"
        );
        assert!(collect(&[&[0x83, 0x00]]).is_err(), "opcode");
        let mut big = vec![0x82, 127];
        big.extend_from_slice(&(MAX_MESSAGE as u64 + 1).to_be_bytes());
        assert!(collect(&[&big]).is_err(), "too long");
    }
}
