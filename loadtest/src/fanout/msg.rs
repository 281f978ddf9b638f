//! The fan-out wire text: building masked client frames for SUBSCRIBE and PUBLISH envelopes (or raw data) into reusable buffers, and scanning received MESSAGE / ACK / ERROR payloads without a JSON library.
//!
//! The data of every publication is `{"seq":N,"ts":NANOS,"pub":ID}` (plus `"pad"` up to `--size`),
//! with `ts` in nanoseconds since the run started (the load generator's monotonic clock, so only
//! deliveries back to this process can be timed). Servers must forward `data` byte for byte, so the
//! scanner first tries the exact layout written here and falls back to a key search for servers that
//! reformat.

use std::io::Write as _;

use wsd_wire::frame::Opcode;

use crate::frame::push_client_frame;

/// One publication's identity, as found in a received payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub publisher: u32,
    pub seq: u64,
    pub ts_ns: u64,
}

/// What a received text message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A publication (a MESSAGE envelope, or raw data in `--raw` mode).
    Message(Stamp),
    /// An ACK carrying our correlation id `s<N>`.
    Ack(Option<u64>),
    /// An ERROR envelope.
    Error,
    /// Anything else (PONG, an ACK of something else, unknown).
    Other,
}

/// Appends one masked text frame carrying `payload` to `out`.
pub fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    push_client_frame(out, Opcode::Text, payload);
}

/// The SUBSCRIBE envelope for topic `t<topic>` with correlation id `s<id>`.
pub fn subscribe(scratch: &mut Vec<u8>, topic: u32, id: u64) {
    scratch.clear();
    let _ = write!(
        scratch,
        r#"{{"type":"SUBSCRIBE","payload":{{"topic":"t{topic}"}},"meta":{{"correlationId":"s{id}"}}}}"#
    );
}

/// One publication: the PUBLISH envelope for topic `t<topic>`, or only its data when `topic` is `None` (raw mode).
/// The data is padded with a `"pad"` string up to `size` bytes when it is shorter.
pub fn publish(scratch: &mut Vec<u8>, topic: Option<u32>, s: Stamp, size: usize, feed_pad: bool) {
    scratch.clear();
    if let Some(t) = topic {
        let _ = write!(
            scratch,
            r#"{{"type":"PUBLISH","payload":{{"topic":"t{t}","data":"#
        );
    }
    let start = scratch.len();
    let _ = write!(
        scratch,
        r#"{{"seq":{},"ts":{},"pub":{}"#,
        s.seq, s.ts_ns, s.publisher
    );
    // Length without padding (with the closing brace), and the shortest padded length.
    let have = scratch.len() - start + 1;
    let min_padded = have + r#","pad":"""#.len();
    if size >= min_padded {
        scratch.extend_from_slice(br#","pad":""#);
        let end = scratch.len() + size - min_padded;
        if feed_pad {
            feed_text(scratch, end, s.seq ^ (u64::from(s.publisher) << 40));
        }
        scratch.resize(end, b'x');
        scratch.push(b'"');
    }
    scratch.push(b'}');
    if topic.is_some() {
        scratch.extend_from_slice(b"}}");
    }
}

/// Appends market-feed-like records (`S042 101.37/101.41 x300;`, numbers from an LCG seeded with
/// `seed`) up to `end` bytes: text that compresses about as well as a real JSON feed, unlike a run
/// of one byte.
fn feed_text(out: &mut Vec<u8>, end: usize, seed: u64) {
    let mut x = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    while out.len() < end {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let r = x >> 24;
        let bid = 10_000 + r % 90_000;
        let _ = write!(
            out,
            "S{:03} {}.{:02}/{}.{:02} x{}; ",
            r % 200,
            bid / 100,
            bid % 100,
            (bid + 4) / 100,
            (bid + 4) % 100,
            100 * (1 + (r >> 20) % 50)
        );
    }
    out.truncate(end);
}

/// Classifies a received text payload.
pub fn scan(p: &[u8]) -> Incoming {
    match string_value(p, b"\"type\"") {
        None => stamp(p).map_or(Incoming::Other, Incoming::Message),
        Some(b"MESSAGE") => stamp(p).map_or(Incoming::Other, Incoming::Message),
        Some(b"ACK") => Incoming::Ack(
            string_value(p, b"\"correlationId\"")
                .and_then(|c| c.strip_prefix(b"s"))
                .and_then(|d| digits(d).filter(|(_, n)| *n == d.len()).map(|(v, _)| v)),
        ),
        Some(b"ERROR") => Incoming::Error,
        Some(_) => Incoming::Other,
    }
}

/// The publication stamp in `p`: the exact layout first, then a search for each key.
fn stamp(p: &[u8]) -> Option<Stamp> {
    exact_stamp(p).or_else(|| {
        Some(Stamp {
            seq: number_value(p, b"\"seq\"")?,
            ts_ns: number_value(p, b"\"ts\"")?,
            publisher: u32::try_from(number_value(p, b"\"pub\"")?).ok()?,
        })
    })
}

/// The stamp in the layout [`publish`] writes: `{"seq":N,"ts":T,"pub":P`.
fn exact_stamp(p: &[u8]) -> Option<Stamp> {
    let mut i = find(p, br#"{"seq":"#)? + 7;
    let (seq, n) = digits(&p[i..])?;
    i += n;
    let (ts, n) = digits(p.get(i..)?.strip_prefix(br#","ts":"#)?)?;
    i += 6 + n;
    let (publisher, _) = digits(p.get(i..)?.strip_prefix(br#","pub":"#)?)?;
    Some(Stamp {
        publisher: u32::try_from(publisher).ok()?,
        seq,
        ts_ns: ts,
    })
}

/// The value and length of the decimal digits at the start of `s`.
fn digits(s: &[u8]) -> Option<(u64, usize)> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 19 {
        return None;
    }
    Some((
        s[..n]
            .iter()
            .fold(0u64, |v, &d| v * 10 + u64::from(d - b'0')),
        n,
    ))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The bytes just after `key`, optional whitespace, `:` and optional whitespace.
fn after_key<'a>(p: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let rest = &p[find(p, key)? + key.len()..];
    let rest = rest.trim_ascii_start().strip_prefix(b":")?;
    Some(rest.trim_ascii_start())
}

fn string_value<'a>(p: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let rest = after_key(p, key)?.strip_prefix(b"\"")?;
    Some(&rest[..rest.iter().position(|&b| b == b'"')?])
}

fn number_value(p: &[u8], key: &[u8]) -> Option<u64> {
    digits(after_key(p, key)?).map(|(v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsd_wire::frame::{Decoded, decode_header};

    const S: Stamp = Stamp {
        publisher: 3,
        seq: 42,
        ts_ns: 123_456_789,
    };

    fn text(v: &[u8]) -> &str {
        std::str::from_utf8(v).expect("utf8")
    }

    #[test]
    fn publish_envelope_and_raw_data() {
        let mut b = Vec::new();
        publish(&mut b, Some(7), S, 0, false);
        assert_eq!(
            text(&b),
            r#"{"type":"PUBLISH","payload":{"topic":"t7","data":{"seq":42,"ts":123456789,"pub":3}}}"#
        );
        publish(&mut b, None, S, 0, false);
        assert_eq!(text(&b), r#"{"seq":42,"ts":123456789,"pub":3}"#);
        // 33 bytes unpadded; padding needs at least 9 more.
        for (size, len) in [
            (0, 33),
            (35, 33),
            (41, 33),
            (42, 42),
            (43, 43),
            (100, 100),
            (1000, 1000),
        ] {
            for feed_pad in [false, true] {
                publish(&mut b, None, S, size, feed_pad);
                assert_eq!(b.len(), len, "size {size}");
                assert_eq!(scan(&b), Incoming::Message(S), "size {size}: {}", text(&b));
            }
        }
        subscribe(&mut b, 2, 17);
        assert_eq!(
            text(&b),
            r#"{"type":"SUBSCRIBE","payload":{"topic":"t2"},"meta":{"correlationId":"s17"}}"#
        );
    }

    #[test]
    fn scans_what_servers_send() {
        let m = br#"{"type":"MESSAGE","payload":{"topic":"t7","data":{"seq":42,"ts":123456789,"pub":3}}}"#;
        assert_eq!(scan(m), Incoming::Message(S));
        // Reformatted by a server that re-serializes: keys reordered, spaces.
        let m = br#"{"payload": {"data": {"pub": 3, "ts": 123456789, "seq": 42}, "topic": "t7"}, "type": "MESSAGE"}"#;
        assert_eq!(scan(m), Incoming::Message(S));
        assert_eq!(
            scan(br#"{"seq":42,"ts":123456789,"pub":3}"#),
            Incoming::Message(S)
        );
        assert_eq!(
            scan(br#"{"type":"ACK","payload":{"of":"SUBSCRIBE"},"meta":{"correlationId":"s17"}}"#),
            Incoming::Ack(Some(17))
        );
        assert_eq!(
            scan(br#"{"type":"ACK","payload":{},"meta":{"correlationId":"x"}}"#),
            Incoming::Ack(None)
        );
        assert_eq!(
            scan(br#"{"type":"ACK","meta":{"correlationId":"s1x"}}"#),
            Incoming::Ack(None)
        );
        assert_eq!(
            scan(br#"{"type":"ERROR","payload":{"code":"INVALID_ARGUMENT"}}"#),
            Incoming::Error
        );
        assert_eq!(scan(br#"{"type":"PONG","payload":{}}"#), Incoming::Other);
        assert_eq!(
            scan(br#"{"type":"MESSAGE","payload":{"data":{"seq":1}}}"#),
            Incoming::Other
        );
        assert_eq!(scan(b"abc"), Incoming::Other);
    }

    #[test]
    fn frames_are_masked_text() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let payload = vec![b'a'; len];
            let mut out = Vec::new();
            push_frame(&mut out, &payload);
            let Ok(Decoded::Header(h, hdr)) = decode_header(&out) else {
                panic!("no header for {len} bytes");
            };
            assert_eq!((h.fin, h.opcode, h.payload_len), (true, 1, len as u64));
            let key = h.mask.expect("client frames are masked");
            let mut unmasked = out[hdr..].to_vec();
            wsd_wire::mask::apply_mask(&mut unmasked, key, 0);
            assert_eq!(unmasked, payload);
        }
    }
}
