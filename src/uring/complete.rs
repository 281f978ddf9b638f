//! What the driver does with each completion: accepted sockets, received bytes (in place in the
//! provided-buffer ring), finished sends, and the release of a closed connection's slot once
//! nothing of it is in flight.

use super::*;

impl UringDriver {
    pub(super) fn complete<F: FnMut(Event<'_>)>(&mut self, cqe: &cqueue::Entry, on_event: &mut F) {
        let (res, flags) = (cqe.result(), cqe.flags());
        let Some((kind, t)) = unpack(cqe.user_data()) else {
            warn!(user_data = cqe.user_data(), "completion wsd did not submit");
            return;
        };
        match kind {
            OpKind::Accept => self.complete_accept(t, res, flags, on_event),
            OpKind::Wake => {
                self.waker.drain();
                on_event(Event::Woken);
                if !cqueue::more(flags) {
                    self.arm_wake();
                }
            }
            OpKind::RingWake => on_event(Event::Woken),
            OpKind::MsgRing => {
                // Only failures complete (CQE_SKIP_SUCCESS): the target's ring is gone, which
                // happens only while the server stops.
                debug!(error = %io::Error::from_raw_os_error(-res), "MSG_RING wake-up failed");
            }
            OpKind::Recv => self.complete_recv(t, res, flags, on_event),
            OpKind::Send => self.complete_send(t, res, on_event),
            OpKind::Cancel => {}
        }
    }

    fn complete_accept<F: FnMut(Event<'_>)>(
        &mut self,
        t: Token,
        res: i32,
        flags: u32,
        on_event: &mut F,
    ) {
        let admin = t == ADMIN_ACCEPT;
        if res >= 0 {
            // SAFETY: a successful accept completion's result is a new descriptor that nothing else
            // owns; wrapping it makes it closed exactly once.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            on_event(if admin {
                Event::AdminAccepted(fd)
            } else {
                Event::Accepted(fd)
            });
        } else {
            let err = io::Error::from_raw_os_error(-res);
            if is_exhaustion(-res) {
                // Out of descriptors: `turn` re-arms after the rest, not at once (it would spin).
                self.accept_backoff.fail(&err, Instant::now());
            } else if -res != Errno::CANCELED.raw_os_error() {
                warn!(error = %err, "accept failed");
            }
        }
        if !cqueue::more(flags) {
            if admin {
                // Re-armed by `turn` (not here: out of descriptors it would spin).
                self.admin_armed = false;
                return;
            }
            self.accept_armed = false;
            // Out of descriptors: `turn` re-arms once the rest is over.
            if !is_exhaustion(-res) && !self.accept_paused {
                self.arm_accept();
            }
        }
    }

    fn complete_recv<F: FnMut(Event<'_>)>(
        &mut self,
        t: Token,
        res: i32,
        flags: u32,
        on_event: &mut F,
    ) {
        let more = cqueue::more(flags);
        let bid = cqueue::buffer_select(flags);
        let (closing, paused) = match self.sock_mut(t) {
            Some(sock) => {
                if !more {
                    sock.recv_armed = false;
                }
                (sock.closing, sock.paused)
            }
            None => {
                debug_assert!(false, "receive completion for a released slot");
                (true, false)
            }
        };
        let token = self.sock_mut(t).map(|s| Token {
            index: t.index,
            generation: s.generation,
        });
        if !more {
            self.recv_inflight = self.recv_inflight.saturating_sub(1);
        }
        if let (Some(bid), Some(bufs)) = (bid, self.bufs.as_mut()) {
            // In incremental mode the kernel goes on filling this buffer: hand it back only once
            // a completion says it is finished with it.
            let buf_more = bufs.is_incremental() && cqueue::buffer_more(flags);
            let data = bufs.filled(bid, res.max(0) as usize, buf_more);
            if let Some(token) = token
                && res > 0
                && !closing
            {
                on_event(Event::Data(token, data));
            }
            if !buf_more {
                bufs.recycle(bid);
            }
        }
        if more {
            return;
        }
        let Some(token) = token else { return };
        if closing {
            if let Some(released) = self.maybe_release(t.index) {
                on_event(Event::Released(released));
            }
        } else if paused && res > 0 {
            // Ended by `set_reading(false)`; `set_reading(true)` re-arms.
        } else if -res == Errno::CANCELED.raw_os_error() {
            // Only `set_reading(false)` cancels a receive. If reading was resumed before this
            // completion came, `set_reading(true)` found the receive still armed and did nothing:
            // re-arm now (a no-op while paused). Never an end of stream.
            self.rearm.push(t.index);
        } else if res > 0 || -res == Errno::NOBUFS.raw_os_error() {
            if res < 0 {
                self.counters.recv_enobufs += 1;
            }
            // The multishot receive ended but the socket is fine: re-arm once buffers are back.
            self.rearm.push(t.index);
        } else {
            // 0 is end of stream; anything else is a socket error.
            on_event(Event::ReadClosed(token));
        }
    }

    fn complete_send<F: FnMut(Event<'_>)>(&mut self, t: Token, res: i32, on_event: &mut F) {
        let Some(sock) = self.sock_mut(t) else {
            debug_assert!(false, "send completion for a released slot");
            return;
        };
        let token = Token {
            index: t.index,
            generation: sock.generation,
        };
        let Some(op) = sock.send.as_mut() else { return };
        let result = if res > 0 {
            op.sent += res as usize;
            if op.sent < op.total && !sock.closing {
                self.submit_send(t.index); // short send: the rest goes out next
                return;
            }
            Ok(())
        } else if res == 0 {
            Err(io::Error::from(io::ErrorKind::WriteZero))
        } else {
            Err(io::Error::from_raw_os_error(-res))
        };
        let Some(SendOp { out, .. }) = sock.send.take() else {
            return;
        };
        if sock.closing {
            if let Some(released) = self.maybe_release(t.index) {
                on_event(Event::Released(released));
            }
        } else {
            on_event(Event::Sent(token, out, result));
        }
    }
}
