//! A deterministic in-memory harness that drives [`Connection`] with a recording [`Handler`].

use super::*;
use crate::proto::frame::test_frames::{client, raw, unmasked};
use crate::proto::frame::{MessageKind, ProtocolError};
use crate::proto::http::write_response;

const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

const SWITCHING: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rec {
    Opened,
    Msg(MessageKind, Vec<u8>),
    Http(String),
}

/// Records everything; echoes messages when `echo`; asks to close on the message "please close".
#[derive(Default)]
struct Recorder {
    recs: Vec<Rec>,
    echo: bool,
    /// Codes reported by [`Handler::close_started`].
    close_codes: Vec<u16>,
    /// Answer [`Handler::coalesce_pongs`] with this.
    coalesce: bool,
}

impl Handler for Recorder {
    fn opened(&mut self, out: &mut Vec<u8>) {
        self.recs.push(Rec::Opened);
        out.extend_from_slice(b"<opened>");
    }

    fn message(&mut self, msg: Message<'_>, out: &mut Vec<u8>) -> Result<(), AppClose> {
        if msg.data == b"please close" {
            return Err(AppClose {
                code: CloseCode::POLICY,
                reason: "as you wish",
            });
        }
        self.recs.push(Rec::Msg(msg.kind, msg.data.to_vec()));
        if self.echo {
            write_frame(out, msg.kind.opcode(), msg.data);
        }
        Ok(())
    }

    fn http_request(&mut self, req: &HttpRequest<'_>, out: &mut Vec<u8>) -> u16 {
        let body = match req.body {
            [] => String::new(),
            body => format!(" body={}", String::from_utf8_lossy(body)),
        };
        self.recs
            .push(Rec::Http(format!("{} {}{body}", req.method, req.path)));
        write_response(out, 404, "Not Found", "text/plain", &[], b"not here\n");
        404
    }

    fn close_started(&mut self, code: CloseCode) {
        self.close_codes.push(code.0);
    }

    fn coalesce_pongs(&mut self) -> bool {
        self.coalesce
    }
}

fn limits() -> Limits {
    Limits {
        max_payload: 1 << 20,
        oversized: crate::proto::Oversized::Fail,
        ws_path: "/ws".into(),
        max_header_bytes: 8192,
        compression: None,
    }
}

/// The outcome of feeding a connection a sequence of chunks.
struct Run {
    conn: Connection,
    recs: Vec<Rec>,
    out: Vec<u8>,
    statuses: Vec<Status>,
}

fn drive<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, limits: &Limits, echo: bool) -> Run {
    let mut conn = Connection::new();
    let mut h = Recorder {
        echo,
        ..Recorder::default()
    };
    let mut out = Vec::new();
    let mut statuses = Vec::new();
    for chunk in chunks {
        let mut input = chunk.to_vec();
        statuses.push(conn.handle_bytes(&mut input, limits, &mut Codec::new(), &mut out, &mut h));
    }
    Run {
        conn,
        recs: h.recs,
        out,
        statuses,
    }
}

/// A connection past the handshake, with `out` cleared.
fn opened() -> (Connection, Recorder, Vec<u8>) {
    let mut conn = Connection::new();
    let mut h = Recorder::default();
    let mut out = Vec::new();
    let status = conn.handle_bytes(
        &mut UPGRADE.to_vec(),
        &limits(),
        &mut Codec::new(),
        &mut out,
        &mut h,
    );
    assert_eq!(status, Status::Open);
    assert_eq!(out, [SWITCHING, b"<opened>"].concat());
    assert!(conn.is_open());
    out.clear();
    h.recs.clear();
    (conn, h, out)
}

fn feed(conn: &mut Connection, h: &mut Recorder, bytes: &[u8], out: &mut Vec<u8>) -> Status {
    conn.handle_bytes(&mut bytes.to_vec(), &limits(), &mut Codec::new(), out, h)
}

/// The bytes of a server close frame.
fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut f = vec![0x88, (2 + reason.len()) as u8];
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(reason.as_bytes());
    f
}

fn server_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    write_frame(&mut f, opcode, payload);
    f
}

/// `len` bytes of valid UTF-8 with code points of every width.
fn text(len: usize) -> Vec<u8> {
    let mut t = "aκ€😀".repeat(len / 10 + 1).into_bytes();
    t.truncate(len);
    while std::str::from_utf8(&t).is_err() {
        t.pop();
    }
    t.resize(len, b'z');
    t
}

/// The handshake followed by frames with every header form: payloads of 0, 1, 125, 126, 65535 and
/// 65536 bytes, a ping, and the peer's close. Also returns where each frame starts and where each
/// payload starts.
fn session() -> (Vec<u8>, Vec<Rec>, Vec<usize>) {
    let sizes = [0usize, 1, 125, 126, 65535, 65536];
    let mut stream = UPGRADE.to_vec();
    let mut recs = vec![Rec::Opened];
    let mut bounds = vec![0];
    let mut push = |stream: &mut Vec<u8>, frame: Vec<u8>, payload_len: usize| {
        bounds.push(stream.len());
        stream.extend_from_slice(&frame);
        bounds.push(stream.len() - payload_len);
    };
    for (i, &len) in sizes.iter().enumerate() {
        let (kind, opcode, payload) = if i % 2 == 0 {
            (MessageKind::Text, Opcode::Text, text(len))
        } else {
            let p: Vec<u8> = (0..len).map(|j| (j * 13 + i) as u8).collect();
            (MessageKind::Binary, Opcode::Binary, p)
        };
        push(&mut stream, client(true, opcode, &payload), len);
        recs.push(Rec::Msg(kind, payload));
        if i == 2 {
            push(&mut stream, client(true, Opcode::Ping, b"ping!"), 5);
        }
    }
    push(&mut stream, client(true, Opcode::Close, b"\x03\xe8bye"), 5);
    bounds.push(stream.len());
    (stream, recs, bounds)
}

/// Splits `stream` in two at each of `offsets` and checks that the messages, the output and the
/// final status are those of feeding it whole.
fn check_splits(stream: &[u8], recs: &[Rec], offsets: impl IntoIterator<Item = usize>) -> usize {
    let whole = drive([stream], &limits(), true);
    assert_eq!(whole.recs, recs);
    assert_eq!(whole.statuses, [Status::Done]);
    let mut count = 0;
    for split in offsets {
        let (a, b) = stream.split_at(split);
        let run = drive([a, b], &limits(), true);
        assert!(run.recs == whole.recs, "messages differ at split {split}");
        assert!(run.out == whole.out, "output differs at split {split}");
        assert_eq!(run.statuses.last(), Some(&Status::Done), "split {split}");
        if split < stream.len() {
            assert_eq!(run.statuses[0], Status::Open, "split {split}");
        }
        count += 1;
    }
    count
}

#[test]
fn size_of_connection() {
    assert_eq!(mem::size_of::<Connection>(), 56);
}

mod closing;
mod deflate;
mod handshake;
mod streams;

#[test]
fn close_started_reports_the_first_close_code_once() {
    let closes = |frames: &[Vec<u8>]| {
        let (mut conn, mut h, mut out) = opened();
        for f in frames {
            let _ = feed(&mut conn, &mut h, f, &mut out);
        }
        h.close_codes
    };
    let peer = |payload: &[u8]| client(true, Opcode::Close, payload);
    // The peer closes: its code, or 1005 without one; nothing more for a second close.
    assert_eq!(closes(&[peer(&1000u16.to_be_bytes())]), [1000]);
    assert_eq!(closes(&[peer(&4001u16.to_be_bytes())]), [4001]);
    assert_eq!(closes(&[peer(b"")]), [1005]);
    // The application closes (1008), then the peer answers: counted once, with 1008.
    assert_eq!(
        closes(&[
            client(true, Opcode::Text, b"please close"),
            peer(&1008u16.to_be_bytes())
        ]),
        [1008]
    );
    // A protocol error (an unmasked frame): 1002, once, whatever follows.
    assert_eq!(
        closes(&[
            unmasked(true, Opcode::Text, b"x"),
            peer(&1002u16.to_be_bytes())
        ]),
        [1002]
    );
    // A close the server starts itself is the caller's to count.
    let (mut conn, mut h, mut out) = opened();
    assert_eq!(
        conn.close(CloseCode::GOING_AWAY, "bye", &mut out),
        Status::Closing
    );
    let _ = feed(&mut conn, &mut h, &peer(&1001u16.to_be_bytes()), &mut out);
    assert!(h.close_codes.is_empty(), "{:?}", h.close_codes);
}

#[test]
fn a_run_of_pings_gets_one_pong_for_the_last_only_when_asked() {
    let mut flood = Vec::new();
    for i in 0..100u8 {
        flood.extend_from_slice(&client(true, Opcode::Ping, &[i]));
    }
    // Normally: one pong per ping, in order.
    let (mut conn, mut h, mut out) = opened();
    assert_eq!(feed(&mut conn, &mut h, &flood, &mut out), Status::Open);
    let each: Vec<u8> = (0..100u8)
        .flat_map(|i| server_frame(Opcode::Pong, &[i]))
        .collect();
    assert_eq!(out, each);
    // A peer over the read-pause bound: the run answers with one pong, the last ping's; a
    // message between two runs keeps its place, so does what was queued before.
    let (mut conn, mut h, mut out) = opened();
    h.coalesce = true;
    h.echo = true;
    out.extend_from_slice(b"queued");
    let mut input = flood.clone();
    input.extend_from_slice(&client(true, Opcode::Text, b"hi"));
    input.extend_from_slice(&client(true, Opcode::Ping, b"a"));
    input.extend_from_slice(&client(true, Opcode::Ping, b"b"));
    assert_eq!(feed(&mut conn, &mut h, &input, &mut out), Status::Open);
    let want = [
        b"queued".to_vec(),
        server_frame(Opcode::Pong, &[99]),
        server_frame(Opcode::Text, b"hi"),
        server_frame(Opcode::Pong, b"b"),
    ]
    .concat();
    assert_eq!(out, want);
}
