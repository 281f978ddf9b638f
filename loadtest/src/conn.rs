//! One client connection: non-blocking connect, HTTP upgrade, then re-sending the prebuilt frames and counting echoes (edge-triggered I/O).

use std::os::fd::OwnedFd;
use std::time::Instant;

use rustix::io::Errno;

use crate::frame::ServerFrameParser;
use crate::sock::Sock;
use crate::stats::{LatencyFifo, Stats};
use crate::upgrade::{Upgrade, connect_result};
use crate::url::Target;

/// Bytes shared by all connections, built once at start.
pub struct Shared<'a> {
    /// The HTTP upgrade request.
    pub request: &'a [u8],
    /// The client frame repeated `in_flight` times, so up to `in_flight` queued frames are one contiguous slice.
    pub batch: &'a [u8],
    /// Length of one client frame.
    pub frame_len: usize,
    /// Messages kept in flight per connection.
    pub in_flight: usize,
    /// Scratch buffer every connection reads into.
    pub read_buf: &'a mut [u8],
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// TCP connect in progress.
    Connecting,
    /// Upgrade request being sent / response being read.
    Upgrading,
    /// Upgraded; waiting for every connection to be ready.
    Ready,
    /// Sending and receiving messages.
    Open,
}

/// Why a connection ended; each kind is counted separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// Connect or upgrade failed.
    Connect(String),
    /// The server sent something that is not a valid echo.
    BadFrame(String),
    /// The server closed the connection or it was reset.
    Closed(String),
}

/// One WebSocket client connection.
pub struct Conn {
    fd: Sock,
    state: State,
    upgrade: Upgrade,
    parser: ServerFrameParser,
    fifo: LatencyFifo,
    send: SendQueue,
}

/// The frames one connection has queued for sending, as a position in the prebuilt batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendQueue {
    /// Frames queued for sending, including a partly written first one.
    pub queued: usize,
    /// Bytes of the first queued frame already written.
    pub offset: usize,
}

impl SendQueue {
    /// The bytes of the queued frames not yet written: a slice of `batch`, the frame repeated
    /// `in_flight` times.
    pub fn unsent<'b>(&self, batch: &'b [u8], frame_len: usize) -> &'b [u8] {
        batch
            .get(self.offset..self.queued * frame_len)
            .unwrap_or_default()
    }

    /// Accounts for the first `written` bytes of [`SendQueue::unsent`] having been sent.
    pub fn wrote(&mut self, written: usize, frame_len: usize) {
        let done = self.offset + written;
        self.queued -= (done / frame_len).min(self.queued);
        self.offset = done % frame_len;
    }
}

impl Conn {
    /// Creates a non-blocking TCP socket and starts connecting to `addr`.
    pub fn open(
        target: &Target,
        parser: ServerFrameParser,
        in_flight: usize,
    ) -> Result<Self, Fail> {
        let fd = Sock::open(target).map_err(Fail::Connect)?;
        Ok(Self {
            fd,
            state: State::Connecting,
            upgrade: Upgrade::default(),
            parser,
            fifo: LatencyFifo::new(in_flight),
            send: SendQueue::default(),
        })
    }

    pub fn fd(&self) -> &OwnedFd {
        self.fd.fd()
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Handles an epoll event; `readable`/`writable` include error and hang-up conditions.
    pub fn on_event(
        &mut self,
        readable: bool,
        writable: bool,
        sh: &mut Shared<'_>,
        stats: &mut Stats,
    ) -> Result<(), Fail> {
        if self.state == State::Connecting {
            if !(readable || writable) {
                return Ok(());
            }
            connect_result(self.fd.fd()).map_err(Fail::Connect)?;
            self.state = State::Upgrading;
            self.send_request(sh.request)?;
        } else if self.state == State::Upgrading && writable {
            self.send_request(sh.request)?;
        }
        if readable {
            self.read(sh, stats)?;
        }
        if writable && self.state == State::Open {
            self.flush(sh)?;
        }
        Ok(())
    }

    /// Starts the message exchange: queues `in_flight` frames stamped `now` and sends them.
    pub fn begin(&mut self, sh: &mut Shared<'_>, now: Instant) -> Result<(), Fail> {
        self.start(sh.in_flight, now);
        self.flush(sh)
    }

    /// Queues `in_flight` frames stamped `now` without sending them (the io_uring loop sends).
    pub fn start(&mut self, in_flight: usize, now: Instant) {
        self.state = State::Open;
        for _ in 0..in_flight {
            self.fifo.push(now);
        }
        self.send.queued = in_flight;
    }

    fn send_request(&mut self, request: &[u8]) -> Result<(), Fail> {
        self.upgrade
            .send_request(&mut self.fd, request)
            .map_err(Fail::Connect)
    }

    /// Reads until the socket is drained (a short read means drained: the next arrival raises a new edge).
    fn read(&mut self, sh: &mut Shared<'_>, stats: &mut Stats) -> Result<(), Fail> {
        loop {
            let n = match self.fd.recv(&mut *sh.read_buf) {
                Ok(n) => n,
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(e) => {
                    return Err(if self.state == State::Upgrading {
                        Fail::Connect(format!("reading upgrade response: {e}"))
                    } else {
                        Fail::Closed(format!("recv: {e}"))
                    });
                }
            };
            if n == 0 {
                return Err(if self.state == State::Upgrading {
                    Fail::Connect("server closed during upgrade".into())
                } else {
                    Fail::Closed("server closed the connection".into())
                });
            }
            let now = Instant::now();
            if self.state == State::Upgrading {
                let rest_at = self.upgrade_response(&sh.read_buf[..n])?;
                if let Some(at) = rest_at {
                    // Bytes after the response are frames (a server must not send any yet).
                    self.frames(at, n, sh, stats, now)?;
                }
            } else {
                self.frames(0, n, sh, stats, now)?;
            }
            if n < sh.read_buf.len() {
                return Ok(());
            }
        }
    }

    /// Feeds response bytes to the upgrade; once it is complete, returns where frames begin in `data`.
    fn upgrade_response(&mut self, data: &[u8]) -> Result<Option<usize>, Fail> {
        let at = self.upgrade.on_response(data).map_err(Fail::Connect)?;
        if at.is_some() {
            self.state = State::Ready;
        }
        Ok(at)
    }

    /// Parses `read_buf[from..to]` as server frames, accounts for echoes, queues replacements and sends them.
    fn frames(
        &mut self,
        from: usize,
        to: usize,
        sh: &mut Shared<'_>,
        stats: &mut Stats,
        now: Instant,
    ) -> Result<(), Fail> {
        if from >= to {
            return Ok(());
        }
        if self.on_bytes(&sh.read_buf[from..to], stats, now)? {
            self.flush(sh)?;
        }
        Ok(())
    }

    /// Parses received bytes as server frames, accounts for the echoes and queues one replacement
    /// per echo (stamped `now`) while open. Returns whether anything was queued. No I/O.
    pub fn on_bytes(&mut self, data: &[u8], stats: &mut Stats, now: Instant) -> Result<bool, Fail> {
        let feed = self.parser.feed(data);
        if feed.messages > 0 {
            let sent = self.fifo.outstanding() - self.send.queued;
            if feed.messages as usize > sent
                || !stats.record_echoes(&mut self.fifo, feed.messages, now)
            {
                return Err(Fail::BadFrame("more echoes than messages sent".into()));
            }
            if self.state == State::Open {
                for _ in 0..feed.messages {
                    self.fifo.push(now);
                }
                self.send.queued += feed.messages as usize;
            }
        }
        if let Some(e) = feed.error {
            return Err(Fail::BadFrame(e.to_string()));
        }
        if feed.close {
            return Err(Fail::Closed("server sent a close frame".into()));
        }
        Ok(feed.messages > 0 && self.state == State::Open)
    }

    /// The bytes of the queued frames not yet written (a slice of the prebuilt `batch`).
    pub fn unsent<'b>(&self, batch: &'b [u8], frame_len: usize) -> &'b [u8] {
        self.send.unsent(batch, frame_len)
    }

    /// Accounts for `written` bytes of [`Conn::unsent`] having been sent.
    pub fn wrote(&mut self, written: usize, frame_len: usize) {
        self.send.wrote(written, frame_len);
    }

    /// Writes queued frames from the prebuilt batch until done or the socket is full.
    fn flush(&mut self, sh: &Shared<'_>) -> Result<(), Fail> {
        match self.fd.flush_tls() {
            Ok(()) => {}
            Err(Errno::AGAIN) => return Ok(()),
            Err(e) => return Err(Fail::Closed(format!("send: {e}"))),
        }
        while self.send.queued > 0 {
            let chunk = self.unsent(sh.batch, sh.frame_len);
            match self.fd.send(chunk) {
                Ok(w) => {
                    let short = w < chunk.len();
                    self.wrote(w, sh.frame_len);
                    if short {
                        // Short write: the send buffer is full; EPOLLOUT will fire when it drains.
                        return Ok(());
                    }
                }
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => {}
                Err(e) => return Err(Fail::Closed(format!("send: {e}"))),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_writes_advance_through_the_batch() {
        let frame_len = 5;
        let batch: Vec<u8> = (0..4u8).flat_map(|f| [f; 5]).collect();
        let mut q = SendQueue {
            queued: 3,
            offset: 0,
        };
        assert_eq!(q.unsent(&batch, frame_len), &batch[..15]);
        q.wrote(7, frame_len);
        assert_eq!(
            (q.queued, q.offset),
            (2, 2),
            "one frame done, two bytes of the next"
        );
        assert_eq!(q.unsent(&batch, frame_len), &batch[2..10]);
        q.wrote(8, frame_len);
        assert_eq!((q.queued, q.offset), (0, 0));
        assert!(q.unsent(&batch, frame_len).is_empty());
        // Frames queued while one is partly written extend the same slice.
        q.queued = 1;
        q.wrote(4, frame_len);
        q.queued += 2;
        assert_eq!(q.unsent(&batch, frame_len), &batch[4..15]);
        q.wrote(11, frame_len);
        assert_eq!(q, SendQueue::default());
        // A byte count past what was queued never underflows.
        q.queued = 1;
        q.wrote(12, frame_len);
        assert_eq!(q.queued, 0);
    }
}
