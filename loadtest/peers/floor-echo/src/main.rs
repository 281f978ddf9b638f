//! The floor of wsd's kernel path, for `loadtest/compare.sh`: wsd's own I/O drivers (`wsd::uring`,
//! the same ring setup as a wsd worker: multishot accept and receive into a provided-buffer ring;
//! or `wsd::epoll`) under a trivial application that answers the upgrade and sends every frame
//! back with only its header rewritten ([`relay`]). What wsd spends above this, per message, is the
//! cost of its WebSocket work and its worker; what this costs is the kernel path and the driver.
//!
//! Usage: `floor-echo uring|epoll PORT` (listens on 127.0.0.1:PORT, one thread; pin it with taskset).

mod relay;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use wsd::epoll::EpollDriver;
use wsd::io::{Driver, Event, Outgoing, Token, Waker};
use wsd::uring::{UringDriver, UringParams};

use relay::Relay;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The drivers keep 24 bits of a token's generation.
const GENERATION_MASK: u32 = 0xFF_FFFF;

/// One connection.
#[derive(Default)]
struct Conn {
    relay: Relay,
    /// Bytes to send once the send in flight completes (the drivers allow one per connection).
    pending: Vec<u8>,
    sending: bool,
    /// A close frame was relayed: close once everything is sent.
    close_when_sent: bool,
    /// Closed (or closing): events are ignored until `Released`.
    closing: bool,
}

/// Connections by slot, with a generation per slot.
#[derive(Default)]
struct Conns {
    slots: Vec<(u32, Option<Conn>)>,
    free: Vec<u32>,
}

impl Conns {
    fn insert(&mut self) -> Token {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push((0, None));
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.1 = Some(Conn::default());
        Token {
            index,
            generation: slot.0,
        }
    }

    fn get(&mut self, token: Token) -> Option<&mut Conn> {
        match self.slots.get_mut(token.index as usize) {
            Some((g, Some(conn))) if *g == token.generation & GENERATION_MASK => Some(conn),
            _ => None,
        }
    }

    fn remove(&mut self, token: Token) {
        if let Some(slot) = self.slots.get_mut(token.index as usize)
            && slot.0 == token.generation & GENERATION_MASK
            && slot.1.take().is_some()
        {
            slot.0 = (slot.0 + 1) & GENERATION_MASK;
            self.free.push(token.index);
        }
    }
}

/// What the event callback asks of the driver once the turn is over.
enum Action {
    Register(Token, OwnedFd),
    Send(Token, Outgoing),
    Close(Token),
}

struct Floor {
    conns: Conns,
    actions: VecDeque<Action>,
    /// Send buffers back from the driver, for reuse.
    spare: Vec<Vec<u8>>,
}

impl Floor {
    fn on_event(&mut self, event: Event<'_>) {
        match event {
            // The floor has no admin listener (it passes none to its driver).
            Event::AdminAccepted(_) => {}
            Event::Accepted(fd) => {
                // As wsd does for every accepted connection.
                let _ = SockRef::from(&fd).set_tcp_nodelay(true);
                let token = self.conns.insert();
                self.actions.push_back(Action::Register(token, fd));
            }
            Event::Data(token, data) => {
                let Some(conn) = self.conns.get(token) else {
                    return;
                };
                if conn.closing {
                    return;
                }
                if conn.relay.feed(data, &mut conn.pending).is_err() {
                    conn.closing = true;
                    self.actions.push_back(Action::Close(token));
                    return;
                }
                conn.close_when_sent = conn.relay.is_closed();
                if !conn.sending && !conn.pending.is_empty() {
                    conn.sending = true;
                    let next = self.spare.pop().unwrap_or_default();
                    let owned = std::mem::replace(&mut conn.pending, next);
                    self.actions.push_back(Action::Send(
                        token,
                        Outgoing {
                            parts: Vec::new(),
                            owned,
                        },
                    ));
                }
            }
            Event::Sent(token, mut out, result) => {
                out.owned.clear();
                self.spare.push(out.owned);
                let Some(conn) = self.conns.get(token) else {
                    return;
                };
                conn.sending = false;
                if conn.closing {
                    return;
                }
                if result.is_err() || (conn.close_when_sent && conn.pending.is_empty()) {
                    conn.closing = true;
                    self.actions.push_back(Action::Close(token));
                } else if !conn.pending.is_empty() {
                    conn.sending = true;
                    let next = self.spare.pop().unwrap_or_default();
                    let owned = std::mem::replace(&mut conn.pending, next);
                    self.actions.push_back(Action::Send(
                        token,
                        Outgoing {
                            parts: Vec::new(),
                            owned,
                        },
                    ));
                }
            }
            Event::ReadClosed(token) => {
                if let Some(conn) = self.conns.get(token)
                    && !conn.closing
                {
                    conn.closing = true;
                    self.actions.push_back(Action::Close(token));
                }
            }
            Event::Released(token) => self.conns.remove(token),
            Event::Woken => {}
        }
    }
}

fn serve<D: Driver>(mut driver: D) -> std::io::Result<()> {
    let mut floor = Floor {
        conns: Conns::default(),
        actions: VecDeque::new(),
        spare: Vec::new(),
    };
    loop {
        driver.turn(Duration::from_secs(1), |event| floor.on_event(event))?;
        while let Some(action) = floor.actions.pop_front() {
            match action {
                Action::Register(token, fd) => driver.register(token, fd),
                Action::Send(token, out) => driver.send(token, out),
                Action::Close(token) => driver.close(token),
            }
        }
    }
}

fn listener(port: u16) -> std::io::Result<OwnedFd> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let socket = Socket::new(Domain::IPV4, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (io, port) = match args.as_slice() {
        [io, port] if io == "uring" || io == "epoll" => match port.parse::<u16>() {
            Ok(p) => (io.as_str(), p),
            Err(e) => {
                eprintln!("floor-echo: PORT {port:?}: {e}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: floor-echo uring|epoll PORT");
            return ExitCode::from(2);
        }
    };
    let outcome = listener(port).and_then(|listener| {
        let waker = Waker::new()?;
        eprintln!("floor-echo ({io}) listening on 127.0.0.1:{port}");
        if io == "uring" {
            serve(UringDriver::new(
                listener,
                None,
                waker,
                UringParams::default(),
            )?)
        } else {
            serve(EpollDriver::new(listener, None, waker)?)
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor-echo: {e}");
            ExitCode::FAILURE
        }
    }
}
