//! One fan-out connection (subscriber or publisher): connect and upgrade, an output buffer written with non-blocking sends, and reads handed to the frame reader.

use rustix::io::Errno;

use super::msg::push_frame;
use super::reader::{Event, Reader};
use super::seq::SeqTrack;
use crate::sock::Sock;
use crate::upgrade::{Upgrade, connect_result};
use crate::url::Target;

/// What a connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Subscribes to topic `t<topic>` and counts what it receives.
    Sub { topic: u32 },
    /// Publishes on topic `t<topic>` as publisher `id`.
    Pub { id: u32, topic: u32 },
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Upgrading,
    /// Upgraded, SUBSCRIBE sent, waiting for its ACK.
    Subscribing,
    /// Subscribed (or a publisher, or raw mode): ready for the run.
    Ready,
}

/// One WebSocket client connection of the fan-out scenario.
pub struct Conn {
    pub fd: Sock,
    pub role: Role,
    pub state: State,
    upgrade: Upgrade,
    pub reader: Reader,
    /// Bytes to send, and how many of them are sent.
    out: Vec<u8>,
    out_off: usize,
    /// End offsets in `out` of the publications it holds.
    pub pub_ends: Vec<usize>,
    /// One per publisher whose messages this connection must receive.
    pub tracks: Vec<SeqTrack>,
}

impl Conn {
    pub fn open(target: &Target, role: Role, tracks: usize) -> Result<Self, String> {
        Ok(Self {
            fd: Sock::open(target)?,
            role,
            state: State::Connecting,
            upgrade: Upgrade::default(),
            reader: Reader::default(),
            out: Vec::new(),
            out_off: 0,
            pub_ends: Vec::new(),
            tracks: vec![SeqTrack::default(); tracks],
        })
    }

    /// Drives connect and upgrade; returns the bytes received after the upgrade response, if it completed.
    /// `Ok(None)` means more events are needed.
    pub fn handshake<'b>(
        &mut self,
        request: &[u8],
        buf: &'b mut [u8],
    ) -> Result<Option<&'b [u8]>, String> {
        if self.state == State::Connecting {
            connect_result(self.fd.fd())?;
            self.state = State::Upgrading;
        }
        self.upgrade.send_request(&mut self.fd, request)?;
        let n = read_some(&mut self.fd, buf)?;
        if n == 0 {
            return Ok(None);
        }
        match self.upgrade.on_response(&buf[..n])? {
            Some(at) => {
                self.reader.deflate = self.upgrade.deflate;
                Ok(Some(&buf[at..n]))
            }
            None => Ok(None),
        }
    }

    /// Whether every queued byte has been sent.
    pub fn flushed(&self) -> bool {
        self.out_off == self.out.len()
    }

    /// Empties the output buffer for a new batch (call only when [`flushed`](Self::flushed)).
    pub fn new_batch(&mut self) {
        self.out.clear();
        self.out_off = 0;
        self.pub_ends.clear();
    }

    /// Queues one publication frame carrying `payload`.
    pub fn push_publication(&mut self, payload: &[u8]) {
        push_frame(&mut self.out, payload);
        self.pub_ends.push(self.out.len());
    }

    /// Queues one text frame carrying `payload` (behind whatever is queued).
    pub fn push_text(&mut self, payload: &[u8]) {
        push_frame(&mut self.out, payload);
    }

    /// Queues a close frame (code 1000) behind whatever is queued.
    pub fn push_close(&mut self) {
        crate::frame::push_client_frame(&mut self.out, wsd_wire::frame::Opcode::Close, &[3, 232]);
    }

    /// Publications queued but not completely written.
    pub fn unwritten_publications(&self) -> usize {
        self.pub_ends.iter().filter(|&&e| e > self.out_off).count()
    }

    /// Sends queued bytes until done or the socket is full.
    pub fn flush(&mut self) -> Result<(), String> {
        match self.fd.flush_tls() {
            Ok(()) => {}
            Err(Errno::AGAIN) => return Ok(()),
            Err(e) => return Err(format!("send: {e}")),
        }
        while let Some(rest) = self.out.get(self.out_off..).filter(|r| !r.is_empty()) {
            match self.fd.send(rest) {
                Ok(n) => self.out_off += n,
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => {}
                Err(e) => return Err(format!("send: {e}")),
            }
        }
        Ok(())
    }

    /// Reads everything available and hands each event to `f`.
    pub fn read_all<F>(&mut self, buf: &mut [u8], f: &mut F) -> Result<(), String>
    where
        F: FnMut(&mut [SeqTrack], &mut Vec<u8>, Event<'_>) -> Result<(), String>,
    {
        loop {
            let n = read_some(&mut self.fd, buf)?;
            if n == 0 {
                return Ok(());
            }
            self.feed(&buf[..n], f)?;
            if n < buf.len() {
                return Ok(());
            }
        }
    }

    /// Hands the events in `data` to `f`.
    pub fn feed<F>(&mut self, data: &[u8], f: &mut F) -> Result<(), String>
    where
        F: FnMut(&mut [SeqTrack], &mut Vec<u8>, Event<'_>) -> Result<(), String>,
    {
        let Self {
            reader,
            tracks,
            out,
            ..
        } = self;
        reader.feed(data, &mut |ev| f(tracks, out, ev))
    }
}

/// One receive: `Ok(0)` when nothing is available; EOF and errors are errors.
fn read_some(fd: &mut Sock, buf: &mut [u8]) -> Result<usize, String> {
    loop {
        return match fd.recv(&mut *buf) {
            Ok(0) => Err("server closed the connection".into()),
            Ok(n) => Ok(n),
            Err(Errno::AGAIN) => Ok(0),
            Err(Errno::INTR) => continue,
            Err(e) => Err(format!("recv: {e}")),
        };
    }
}
