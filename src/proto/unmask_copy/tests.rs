//! The copy-and-unmask path ([`Connection::unmasking_copy`], [`Connection::handle_copied`])
//! against the in-place one ([`Connection::handle_bytes`]) on the same input, cut into the same
//! reads, each read cut again into records: every event, every byte written and every status
//! must be the same.

use proptest::prelude::*;

use crate::proto::connection::{AppClose, Connection, Handler, Limits, Status};
use crate::proto::deflate::{Codec, Compression};
use crate::proto::frame::test_frames::{client, raw, unmasked};
use crate::proto::frame::{Message, MessageKind, Opcode, write_frame};
use crate::proto::{CloseCode, HttpRequest, Oversized};

const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

const UPGRADE_DEFLATE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";

/// Records what the connection reports; echoes messages.
#[derive(Default, Debug, PartialEq, Eq)]
struct Recorder {
    events: Vec<String>,
}

impl Handler for Recorder {
    fn opened(&mut self, _out: &mut Vec<u8>) {
        self.events.push("opened".into());
    }

    fn message(&mut self, msg: Message<'_>, out: &mut Vec<u8>) -> Result<(), AppClose> {
        self.events.push(format!("{:?} {:?}", msg.kind, msg.data));
        write_frame(out, msg.kind.opcode(), msg.data);
        Ok(())
    }

    fn oversized(&mut self, kind: MessageKind, _out: &mut Vec<u8>) -> Result<(), AppClose> {
        self.events.push(format!("oversized {kind:?}"));
        Ok(())
    }

    fn http_request(&mut self, req: &HttpRequest<'_>, _out: &mut Vec<u8>) -> u16 {
        self.events.push(format!("http {}", req.path));
        404
    }

    fn close_started(&mut self, code: CloseCode) {
        self.events.push(format!("close {}", code.0));
    }
}

/// What a connection did with an input.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    handler: Recorder,
    out: Vec<u8>,
    statuses: Vec<Status>,
}

fn limits(oversized: Oversized, deflate: bool) -> Limits {
    Limits {
        max_payload: 3000,
        oversized,
        ws_path: "/ws".into(),
        max_header_bytes: 8192,
        compression: deflate.then_some(Compression { min_size: 16 }),
    }
}

/// Feeds `reads` in place.
fn in_place(reads: &[Vec<u8>], limits: &Limits) -> Outcome {
    let (mut conn, mut codec, mut o) = (Connection::new(), Codec::new(), empty());
    for read in reads {
        let mut input = read.clone();
        let s = conn.handle_bytes(&mut input, limits, &mut codec, &mut o.out, &mut o.handler);
        o.statuses.push(s);
        if s == Status::Done {
            break;
        }
    }
    o
}

/// Feeds `reads`, each cut into records at `cuts` (offsets into the read, modulo its length),
/// through the copy.
fn copied(reads: &[Vec<u8>], cuts: &[usize], limits: &Limits) -> Outcome {
    let (mut conn, mut codec, mut o) = (Connection::new(), Codec::new(), empty());
    let mut buf = Vec::new();
    for read in reads {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (read.len() + 1)).collect();
        at.push(0);
        at.push(read.len());
        at.sort_unstable();
        let mut copy = conn.unmasking_copy();
        buf.clear();
        for w in at.windows(2) {
            copy.push(&read[w[0]..w[1]], &mut buf);
        }
        let s = conn.handle_copied(
            &copy,
            &mut buf,
            limits,
            &mut codec,
            &mut o.out,
            &mut o.handler,
        );
        o.statuses.push(s);
        if s == Status::Done {
            break;
        }
    }
    o
}

fn empty() -> Outcome {
    Outcome {
        handler: Recorder::default(),
        out: Vec::new(),
        statuses: Vec::new(),
    }
}

/// `stream` cut into reads at `cuts`.
fn split(stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    at.push(0);
    at.push(stream.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| stream[w[0]..w[1]].to_vec()).collect()
}

fn same(stream: &[u8], reads: &[usize], records: &[usize], limits: &Limits) -> (Outcome, Outcome) {
    let reads = split(stream, reads);
    (in_place(&reads, limits), copied(&reads, records, limits))
}

#[test]
fn a_16_kib_message_over_two_tls_records() {
    // A 16 KiB message's frame is 16,392 bytes: rustls's client sends 16,384 and then 8.
    let payload: Vec<u8> = (0..16384).map(|i| (i * 7 + 1) as u8).collect();
    let stream = [UPGRADE, &client(true, Opcode::Binary, &payload)].concat();
    let limits = Limits {
        max_payload: 1 << 20,
        ..limits(Oversized::Fail, false)
    };
    let (a, b) = same(&stream, &[UPGRADE.len()], &[16384], &limits);
    assert_eq!(a, b);
    assert_eq!(a.statuses, [Status::Open, Status::Open]);
    assert!(
        a.out.ends_with(&payload),
        "the echo of the unmasked payload"
    );
}

#[test]
fn headers_and_keys_cut_across_records_and_reads() {
    let text = "héllo wörld, a text long enough to cross several cuts".repeat(5);
    let mut stream = UPGRADE.to_vec();
    stream.extend(client(false, Opcode::Text, &text.as_bytes()[..100]));
    stream.extend(client(true, Opcode::Ping, b"ping!"));
    stream.extend(client(true, Opcode::Continuation, &text.as_bytes()[100..]));
    stream.extend(client(true, Opcode::Binary, &[7; 300]));
    stream.extend(client(true, Opcode::Binary, b""));
    stream.extend(client(true, Opcode::Close, &[3, 232]));
    let base = UPGRADE.len();
    for cut in base..stream.len() {
        for record in [1usize, 2, 5, 13] {
            let (a, b) = same(
                &stream,
                &[base, cut],
                &[record, record + 1],
                &limits(Oversized::Fail, false),
            );
            assert_eq!(a, b, "read cut {cut}, record cut {record}");
            assert_eq!(a.statuses.last(), Some(&Status::Done));
        }
    }
}

#[test]
fn the_handshake_phase_copies_verbatim() {
    let stream = [UPGRADE, &client(true, Opcode::Text, b"pipelined")].concat();
    let (a, b) = same(&stream, &[], &[10, 150], &limits(Oversized::Fail, false));
    assert_eq!(a, b);
    assert!(a.handler.events.iter().any(|e| e.contains("Text")));
}

/// One client frame or some other bytes.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    let opcode = prop_oneof![
        Just(Opcode::Text),
        Just(Opcode::Binary),
        Just(Opcode::Continuation),
        Just(Opcode::Ping),
        Just(Opcode::Pong),
        Just(Opcode::Close),
    ];
    let small = proptest::collection::vec(any::<u8>(), 0..200);
    let text = "[a-zé€😀]{0,80}".prop_map(String::into_bytes);
    prop_oneof![
        6 => (any::<bool>(), opcode, prop_oneof![small.clone(), text]).prop_map(|(fin, op, p)| client(fin, op, &p)),
        1 => (any::<u8>(), small.clone()).prop_map(|(b0, p)| raw(b0, &p)),
        1 => (any::<bool>(), 126usize..4000).prop_map(|(fin, n)| client(fin, Opcode::Binary, &vec![0x5a; n])),
        1 => small.clone().prop_map(|p| unmasked(true, Opcode::Binary, &p)),
        1 => proptest::collection::vec(any::<u8>(), 0..16),
    ]
}

proptest! {
    #[test]
    fn copied_and_in_place_agree(
        upgrade in 0u8..3,
        pieces in proptest::collection::vec(piece(), 0..12),
        reads in proptest::collection::vec(any::<usize>(), 0..8),
        records in proptest::collection::vec(any::<usize>(), 0..6),
        discard in any::<bool>(),
    ) {
        let head: &[u8] = match upgrade {
            0 => UPGRADE,
            1 => UPGRADE_DEFLATE,
            _ => b"",
        };
        let mut stream = head.to_vec();
        for p in &pieces {
            stream.extend_from_slice(p);
        }
        let oversized = if discard { Oversized::Discard } else { Oversized::Fail };
        let limits = limits(oversized, upgrade == 1);
        let (a, b) = same(&stream, &reads, &records, &limits);
        prop_assert_eq!(a, b);
    }
}
