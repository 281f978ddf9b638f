//! Fan-out accounting while the run goes: what each received message means (delivery, ACK, ERROR, ping) and when a publisher may send its next publications.

use std::time::Instant;

use wsd_wire::frame::Opcode;

use super::conn::{Conn, Role, State};
use super::msg::{self, Incoming, Stamp};
use super::reader::Event;
use super::seq::SeqTrack;
use super::stats::Deliveries;
use super::window::Window;
use super::{Config, Counts};

/// Run-wide state shared by all connections.
pub struct Run<'a> {
    pub cfg: &'a Config,
    pub t0: Instant,
    pub windows: Vec<Window>,
    /// Connection index of each publisher.
    pub pub_conn: Vec<usize>,
    pub deliveries: Deliveries,
    pub counts: Counts,
    pub scratch: Vec<u8>,
}

impl Run<'_> {
    pub fn fail(&mut self, e: String) {
        self.counts.first_error.get_or_insert(e);
    }

    /// Accounts for one event received on connection `idx` with role `role`.
    pub fn on_event(
        &mut self,
        idx: usize,
        role: Role,
        st: &mut State,
        tracks: &mut [SeqTrack],
        out: &mut Vec<u8>,
        ev: Event<'_>,
    ) -> Result<(), String> {
        let text = match ev {
            Event::Text(t) => t,
            Event::Binary(_) => return Err("unexpected binary message".into()),
            Event::Ping(p) => {
                self.counts.pings += 1;
                crate::frame::push_client_frame(out, Opcode::Pong, p);
                return Ok(());
            }
            Event::Close => return Err("server sent a close frame".into()),
        };
        match msg::scan(text) {
            Incoming::Message(s) => self.on_message(role, tracks, s),
            Incoming::Ack(Some(id)) if id == idx as u64 && *st == State::Subscribing => {
                *st = State::Ready;
                Ok(())
            }
            Incoming::Error => {
                self.counts.server_errors += 1;
                self.fail(format!(
                    "server ERROR: {}",
                    String::from_utf8_lossy(&text[..text.len().min(200)])
                ));
                Ok(())
            }
            Incoming::Ack(_) | Incoming::Other => Ok(()),
        }
    }

    fn on_message(&mut self, role: Role, tracks: &mut [SeqTrack], s: Stamp) -> Result<(), String> {
        let now_ns = u64::try_from(self.t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let p = s.publisher as usize;
        let track = match role {
            Role::Sub { topic }
                if p < self.cfg.publishers && p % self.cfg.topics == topic as usize =>
            {
                tracks.get_mut(p / self.cfg.topics)
            }
            Role::Pub { id, .. } if self.cfg.raw_self && id == s.publisher => tracks.get_mut(0),
            _ => None,
        };
        let (Some(track), Some(w)) = (track, self.windows.get_mut(p)) else {
            self.counts.unexpected += 1;
            self.fail(format!(
                "delivery from publisher {p} to a connection that should not get it"
            ));
            return Ok(());
        };
        if s.seq >= w.sent() {
            self.counts.unexpected += 1;
            self.fail(format!(
                "delivery of publisher {p}'s message {} that was never sent",
                s.seq
            ));
            return Ok(());
        }
        if track.on(s.seq).is_new() {
            w.on_delivered(s.seq);
            self.deliveries.record(s.ts_ns, now_ns);
        }
        Ok(())
    }

    /// Queues new publications on publisher `p`'s connection (only once its previous batch is written).
    pub fn publish(&mut self, p: usize, conn: &mut Conn, pub_start: Instant, now: Instant) {
        if !conn.flushed() {
            return;
        }
        let w = &mut self.windows[p];
        let mut n = w.room();
        if let Some(rate) = self.cfg.rate {
            let due = (rate / self.cfg.publishers as f64
                * now.duration_since(pub_start).as_secs_f64()) as u64;
            n = n.min(due.saturating_sub(w.sent()) as usize);
        }
        if n == 0 {
            return;
        }
        let Role::Pub { id, topic } = conn.role else {
            return;
        };
        let topic = (!self.cfg.raw).then_some(topic);
        let ts_ns = u64::try_from(now.duration_since(self.t0).as_nanos()).unwrap_or(u64::MAX);
        conn.new_batch();
        for _ in 0..n {
            msg::publish(
                &mut self.scratch,
                topic,
                Stamp {
                    publisher: id,
                    seq: w.sent(),
                    ts_ns,
                },
                self.cfg.size,
                self.cfg.feed_pad,
            );
            conn.push_publication(&self.scratch);
            w.on_sent();
        }
    }
}
