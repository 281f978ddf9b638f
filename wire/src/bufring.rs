//! The provided-buffer ring that multishot receives fill: wsd's per-worker receive pool and the
//! one `wsd-loadtest echo --io uring` uses.
//!
//! Every connection's receive draws from this one pool, so an idle connection owns no read buffer
//! (docs/DESIGN.md decision 4).
//! A buffer is handed back to the kernel as soon as its owner has parsed it.
//!
//! Where the kernel supports it (6.12+), the ring is registered for incremental consumption
//! (`IOU_PBUF_RING_INC`): a receive takes only the bytes it needs from the buffer at the ring's
//! head, and the next receive continues in the same buffer. Buffers can then be large, so a 16 KiB
//! message arrives in one completion and one contiguous slice, while a 20-byte message still
//! uses 20 bytes of the pool.

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use io_uring::types::BufRingEntry;

const PAGE: usize = 4096;
/// `IOU_PBUF_RING_INC` from the kernel's uapi (the io-uring crate keeps its copy private).
const IOU_PBUF_RING_INC: u16 = 2;

/// A ring of `entries` buffers of `buf_size` bytes each, registered as one buffer group.
pub struct BufRing {
    ring: NonNull<BufRingEntry>,
    ring_layout: Layout,
    bufs: NonNull<u8>,
    bufs_layout: Layout,
    entries: u16,
    buf_size: u32,
    /// Our copy of the tail; the kernel sees it only after [`BufRing::publish`].
    tail: u16,
    published: u16,
    /// Registered for incremental consumption.
    incremental: bool,
    /// Incremental mode: how far into each buffer the kernel has filled so far.
    consumed: Vec<u32>,
}

impl BufRing {
    /// Allocates the ring and its buffers and queues every buffer (published on registration).
    /// `entries` must be a power of two no larger than 32768.
    pub fn new(entries: u16, buf_size: u32) -> io::Result<Self> {
        if !entries.is_power_of_two() || entries > 32768 || buf_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad buffer ring size",
            ));
        }
        let invalid = |_| io::Error::new(io::ErrorKind::InvalidInput, "buffer ring too large");
        let ring_layout =
            Layout::from_size_align(usize::from(entries) * size_of::<BufRingEntry>(), PAGE)
                .map_err(invalid)?;
        let bufs_layout = Layout::from_size_align(usize::from(entries) * buf_size as usize, PAGE)
            .map_err(invalid)?;
        // SAFETY: both layouts have a non-zero size (entries >= 1, buf_size >= 1).
        let ring = NonNull::new(unsafe { alloc_zeroed(ring_layout) }.cast::<BufRingEntry>());
        // SAFETY: as above.
        let bufs = NonNull::new(unsafe { alloc(bufs_layout) });
        let (Some(ring), Some(bufs)) = (ring, bufs) else {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "buffer ring allocation failed",
            ));
        };
        let mut this = BufRing {
            ring,
            ring_layout,
            bufs,
            bufs_layout,
            entries,
            buf_size,
            tail: 0,
            published: 0,
            incremental: false,
            consumed: vec![0; usize::from(entries)],
        };
        for bid in 0..entries {
            this.recycle(bid);
        }
        Ok(this)
    }

    /// Registers the ring with the kernel as buffer group `bgid` (incrementally consumed where
    /// the kernel supports it) and publishes every buffer.
    ///
    /// # Safety
    ///
    /// From now on the kernel may read the ring and write the buffers during any receive that
    /// selects from group `bgid`. The caller must not drop this `BufRing` while such a receive can
    /// still be in flight: it either reaps every receive's last completion first, or leaks the
    /// `BufRing` (`std::mem::forget`). Without a receive in flight nothing uses the registration,
    /// even if something (a MSG_RING waker) keeps the io_uring itself open.
    pub unsafe fn register(&mut self, submitter: &Submitter<'_>, bgid: u16) -> io::Result<()> {
        let mut result = Err(io::Error::from(io::ErrorKind::Unsupported));
        for flags in [IOU_PBUF_RING_INC, 0] {
            // SAFETY: `self.ring` points to `entries` page-aligned `BufRingEntry`s that stay
            // allocated until `self` is dropped, and the caller guarantees (this function's
            // contract) that `self` is not dropped while the kernel can still use them.
            result = unsafe {
                submitter.register_buf_ring_with_flags(
                    self.ring.as_ptr() as u64,
                    self.entries,
                    bgid,
                    flags,
                )
            };
            if result.is_ok() {
                self.incremental = flags == IOU_PBUF_RING_INC;
                break;
            }
        }
        result?;
        self.publish();
        Ok(())
    }

    /// Whether the kernel consumes buffers incrementally.
    #[inline]
    pub fn is_incremental(&self) -> bool {
        self.incremental
    }

    /// The `len` bytes the kernel just received into buffer `bid`. `more` is the completion's
    /// BUF_MORE flag: the kernel keeps filling this buffer after these bytes (incremental mode).
    #[inline]
    pub fn filled(&mut self, bid: u16, len: usize, more: bool) -> &mut [u8] {
        let bid = bid % self.entries;
        let consumed = &mut self.consumed[usize::from(bid)];
        let start = if self.incremental {
            *consumed as usize
        } else {
            0
        };
        let start = start.min(self.buf_size as usize);
        let len = len.min(self.buf_size as usize - start);
        *consumed = if self.incremental && more {
            (start + len) as u32
        } else {
            0
        };
        let offset = usize::from(bid) * self.buf_size as usize + start;
        // SAFETY: `start + len <= buf_size`, so the range lies inside buffer `bid` of the
        // `entries * buf_size` allocation. The kernel handed exactly these bytes to this
        // completion and never writes them again: it either moves on past them in the same
        // buffer (incremental mode) or leaves the buffer alone until `recycle(bid)` and
        // `publish()`. `&mut self` keeps this the only reference meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.bufs.as_ptr().add(offset), len) }
    }

    /// Queues buffer `bid` for the kernel again (visible after [`BufRing::publish`]).
    #[inline]
    pub fn recycle(&mut self, bid: u16) {
        let bid = bid % self.entries;
        self.consumed[usize::from(bid)] = 0;
        let slot = usize::from(self.tail & (self.entries - 1));
        // SAFETY: `slot < entries`, so the entry is inside the ring allocation. The kernel reads
        // entries only up to the published tail, and this slot lies past it until `publish`.
        let entry = unsafe { &mut *self.ring.as_ptr().add(slot) };
        // SAFETY: `bid < entries`, so the offset is inside the buffer allocation.
        let addr = unsafe {
            self.bufs
                .as_ptr()
                .add(usize::from(bid) * self.buf_size as usize)
        };
        entry.set_addr(addr as u64);
        entry.set_len(self.buf_size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every recycled buffer visible to the kernel.
    #[inline]
    pub fn publish(&mut self) {
        if self.published == self.tail {
            return;
        }
        // SAFETY: the tail field lives inside the first ring entry, which is allocated, aligned for
        // u16 and shared with the kernel only through atomic access on both sides.
        let tail =
            unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.ring.as_ptr()).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
        self.published = self.tail;
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both pointers came from `alloc`/`alloc_zeroed` with exactly these layouts, and the
        // owner guarantees the kernel no longer uses them (`register`'s contract: it leaks the ring
        // instead of dropping it while a receive may be in flight).
        unsafe {
            dealloc(self.ring.as_ptr().cast(), self.ring_layout);
            dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use io_uring::{IoUring, cqueue, opcode, types};

    use super::BufRing;

    #[test]
    fn rejects_bad_sizes() {
        for (entries, size) in [(0, 64), (3, 64), (8, 0)] {
            assert!(BufRing::new(entries, size).is_err(), "{entries} x {size}");
        }
    }

    /// A real multishot receive through the ring: bytes split over small buffers come out whole
    /// and in order, buffers are recycled, and the stream's end ends the receive.
    #[test]
    fn a_multishot_receive_fills_and_recycles_buffers() {
        let mut ring = match IoUring::new(8) {
            Ok(ring) => ring,
            Err(e) => {
                eprintln!("note: io_uring unavailable ({e}); skipping");
                return;
            }
        };
        let mut bufs = BufRing::new(4, 16).expect("ring");
        // SAFETY: the receive below runs until end of stream (its last completion is reaped
        // before the loop ends), and `ring` is dropped before `bufs`.
        if let Err(e) = unsafe { bufs.register(&ring.submitter(), 7) } {
            eprintln!("note: provided-buffer rings unavailable ({e}); skipping");
            return;
        }
        let (mut peer, local) = UnixStream::pair().expect("socketpair");
        let sqe = opcode::RecvMulti::new(types::Fd(local.as_raw_fd()), 7)
            .build()
            .user_data(1);
        // SAFETY: the receive writes only into the registered ring, which outlives it (above).
        unsafe { ring.submission().push(&sqe) }.expect("submission queue has room");
        let sent: Vec<u8> = (0..200u8).collect();
        let mut got = Vec::new();
        let mut ended = false;
        for chunk in sent.chunks(37) {
            peer.write_all(chunk).expect("write");
            let want = got.len() + chunk.len();
            while got.len() < want {
                ring.submit_and_wait(1).expect("io_uring_enter");
                let cqes: Vec<_> = ring.completion().map(|c| (c.result(), c.flags())).collect();
                for (res, flags) in cqes {
                    assert!(res > 0, "receive failed: {res}");
                    assert!(cqueue::more(flags), "the multishot receive ended early");
                    let bid = cqueue::buffer_select(flags).expect("a buffer");
                    let more = bufs.is_incremental() && cqueue::buffer_more(flags);
                    let data = bufs.filled(bid, res as usize, more);
                    assert!(data.len() <= 16);
                    got.extend_from_slice(data);
                    if !more {
                        bufs.recycle(bid);
                    }
                }
                bufs.publish();
            }
        }
        assert_eq!(got, sent);
        drop(peer);
        while !ended {
            ring.submit_and_wait(1).expect("io_uring_enter");
            for c in ring.completion() {
                assert_eq!(c.result(), 0, "end of stream expected");
                ended = !cqueue::more(c.flags());
            }
        }
        drop(ring);
    }
}
