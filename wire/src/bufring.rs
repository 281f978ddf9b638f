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
//!
//! Resident memory: the buffers are one anonymous mapping of their own, and a page of it becomes
//! resident only when the kernel first receives into it. Over time receives walk the whole ring
//! (the kernel takes buffers in ring order, and a recycled buffer goes to the back), so after
//! `entries × buf_size` bytes received all of it is resident. [`BufRing::release_pages`] gives
//! those pages back (`MADV_DONTNEED`); wsd calls it on a quiet worker turn, at most once a second
//! (`worker/trim.rs`), so an idle server keeps none of its ring resident.

use std::alloc::{Layout, alloc_zeroed, dealloc};
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
    /// `entries * buf_size` bytes, page-aligned: an anonymous mapping of its own (`mmap`).
    bufs: NonNull<u8>,
    bufs_len: usize,
    entries: u16,
    buf_size: u32,
    /// Our copy of the tail; the kernel sees it only after [`BufRing::publish`].
    tail: u16,
    published: u16,
    /// Registered for incremental consumption.
    incremental: bool,
    /// Incremental mode: how far into each buffer the kernel has filled so far.
    consumed: Vec<u32>,
    /// The kernel has received into the buffers since the last [`BufRing::release_pages`].
    touched: bool,
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
        let bufs_len = usize::from(entries)
            .checked_mul(buf_size as usize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "buffer ring too large"))?;
        // SAFETY: the layout has a non-zero size (entries >= 1).
        let ring = NonNull::new(unsafe { alloc_zeroed(ring_layout) }.cast::<BufRingEntry>())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::OutOfMemory, "buffer ring allocation failed")
            })?;
        // SAFETY: a fresh private anonymous mapping (no address hint, no descriptor) overlaps no
        // memory of this process; its length is non-zero.
        let mapped = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bufs_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let bufs = (mapped != libc::MAP_FAILED)
            .then(|| NonNull::new(mapped.cast::<u8>()))
            .flatten();
        let Some(bufs) = bufs else {
            let err = io::Error::last_os_error();
            // SAFETY: `ring` came from `alloc_zeroed` with this layout and is not used again.
            unsafe { dealloc(ring.as_ptr().cast(), ring_layout) };
            return Err(err);
        };
        let mut this = BufRing {
            ring,
            ring_layout,
            bufs,
            bufs_len,
            entries,
            buf_size,
            tail: 0,
            published: 0,
            incremental: false,
            consumed: vec![0; usize::from(entries)],
            touched: false,
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
        self.touched |= len > 0;
        *consumed = if self.incremental && more {
            (start + len) as u32
        } else {
            0
        };
        let offset = usize::from(bid) * self.buf_size as usize + start;
        // SAFETY: `start + len <= buf_size`, so the range lies inside buffer `bid` of the
        // `entries * buf_size` mapping. The kernel handed exactly these bytes to this
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
        // SAFETY: `bid < entries`, so the offset is inside the buffers' mapping.
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

    /// Gives the buffers' resident pages back to the kernel (`madvise(MADV_DONTNEED)` over the
    /// whole mapping) if anything was received since the last call; returns whether it did. The
    /// mapping stays: the next receive into a released page faults in a fresh zero page.
    ///
    /// What this discards is the content of every buffer, so call it only when no byte there is
    /// still to be read:
    ///
    /// - Userspace: `&mut self` means no slice from [`BufRing::filled`] is alive, and `filled`
    ///   hands out only bytes the kernel has just written (never earlier bytes of a partly
    ///   consumed buffer), so nothing already reported is read again.
    /// - The kernel: every receive completion must have been reaped and its bytes taken with
    ///   `filled`, and no receive may be writing into the buffers meanwhile. Bytes received
    ///   but not yet reported would read back as zeros. wsd's rings are `DEFER_TASKRUN`, so
    ///   receives copy data (and post their completions) only inside the worker thread's own
    ///   `io_uring_enter`: between turns, with the completion queue drained, nothing is pending.
    ///
    /// Cost: one syscall, skipped when nothing was received since the last call. Measured on
    /// the shared 2-core VM (thread CPU time of a C loop over an 8 MiB mapping, load average
    /// 7): 1.3-1.4 ms with all 2,048 pages resident (0.7 µs a page), 12-21 µs with none; each
    /// page a later receive touches again then costs a page fault, 3.1-3.3 µs here (6.4-6.8 ms
    /// for the whole ring).
    pub fn release_pages(&mut self) -> io::Result<bool> {
        if !self.touched {
            return Ok(false);
        }
        // SAFETY: the range is exactly the anonymous private mapping made in `new`, page-aligned,
        // owned by `self` and not freed before `drop`. No reference into it is alive (`&mut self`
        // borrows every slice `filled` hands out). MADV_DONTNEED only replaces its pages' content
        // by zeros on their next touch; the kernel, which may write there during a later receive,
        // faults the page in again as any user-memory write does.
        let rc = unsafe {
            libc::madvise(
                self.bufs.as_ptr().cast(),
                self.bufs_len,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.touched = false;
        Ok(true)
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the ring came from `alloc_zeroed` with exactly this layout and the buffers are
        // the mapping made in `new` with this length; the owner guarantees the kernel no longer
        // uses them (`register`'s contract: it leaks the ring instead of dropping it while a
        // receive may be in flight).
        unsafe {
            dealloc(self.ring.as_ptr().cast(), self.ring_layout);
            libc::munmap(self.bufs.as_ptr().cast(), self.bufs_len);
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

    /// How many pages of the buffers' mapping are resident (`mincore`).
    fn resident_pages(bufs: &BufRing) -> usize {
        let mut vec = vec![0u8; bufs.bufs_len.div_ceil(super::PAGE)];
        // SAFETY: the range is the buffers' page-aligned mapping, and `vec` has one byte per page
        // of it, as `mincore` writes.
        let rc =
            unsafe { libc::mincore(bufs.bufs.as_ptr().cast(), bufs.bufs_len, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    /// Receives what `peer` sends (`len` bytes) through `bufs`, recycling finished buffers.
    fn receive(ring: &mut IoUring, bufs: &mut BufRing, len: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < len {
            ring.submit_and_wait(1).expect("io_uring_enter");
            let cqes: Vec<_> = ring.completion().map(|c| (c.result(), c.flags())).collect();
            for (res, flags) in cqes {
                assert!(res > 0, "receive failed: {res}");
                assert!(cqueue::more(flags), "the multishot receive ended early");
                let bid = cqueue::buffer_select(flags).expect("a buffer");
                let more = bufs.is_incremental() && cqueue::buffer_more(flags);
                got.extend_from_slice(bufs.filled(bid, res as usize, more));
                if !more {
                    bufs.recycle(bid);
                }
            }
            bufs.publish();
        }
        got
    }

    /// Received bytes leave pages resident; `release_pages` gives every one back, and receives
    /// after it, also into the buffer the kernel was partway through, deliver the right bytes.
    #[test]
    fn released_pages_stop_being_resident_and_receives_go_on() {
        let mut ring = match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(8)
        {
            Ok(ring) => ring,
            Err(e) => {
                eprintln!("note: io_uring unavailable ({e}); skipping");
                return;
            }
        };
        let mut bufs = BufRing::new(8, 8192).expect("ring");
        // SAFETY: the receive below ends (end of stream, reaped) before the ring is dropped, and
        // `ring` is dropped before `bufs`.
        if let Err(e) = unsafe { bufs.register(&ring.submitter(), 3) } {
            eprintln!("note: provided-buffer rings unavailable ({e}); skipping");
            return;
        }
        assert_eq!(resident_pages(&bufs), 0, "untouched buffers are resident");
        assert!(
            !bufs.release_pages().expect("madvise"),
            "nothing to release yet"
        );
        let (mut peer, local) = UnixStream::pair().expect("socketpair");
        let sqe = opcode::RecvMulti::new(types::Fd(local.as_raw_fd()), 3)
            .build()
            .user_data(1);
        // SAFETY: the receive writes only into the registered ring, which outlives it (above).
        unsafe { ring.submission().push(&sqe) }.expect("submission queue has room");
        // Three and a half buffers' worth, in pieces, so one buffer is left partly filled.
        let sent: Vec<u8> = (0..3 * 8192 + 4000).map(|i| (i % 251) as u8).collect();
        for chunk in sent.chunks(3000) {
            peer.write_all(chunk).expect("write");
            assert_eq!(receive(&mut ring, &mut bufs, chunk.len()), chunk);
        }
        let touched = resident_pages(&bufs);
        assert!(
            touched >= 7,
            "only {touched} pages resident after {} bytes",
            sent.len()
        );
        assert!(
            bufs.release_pages().expect("madvise"),
            "touched buffers not released"
        );
        assert_eq!(
            resident_pages(&bufs),
            0,
            "pages stayed resident after release"
        );
        assert!(!bufs.release_pages().expect("madvise"), "released twice");
        // Receiving goes on where it was, in the released pages.
        let more: Vec<u8> = (0..20_000).map(|i| (i % 241) as u8 ^ 0x5a).collect();
        for chunk in more.chunks(1000) {
            peer.write_all(chunk).expect("write");
            assert_eq!(receive(&mut ring, &mut bufs, chunk.len()), chunk);
        }
        assert!(resident_pages(&bufs) > 0);
        drop(peer);
        let mut ended = false;
        while !ended {
            ring.submit_and_wait(1).expect("io_uring_enter");
            for c in ring.completion() {
                assert_eq!(c.result(), 0, "end of stream expected");
                ended = !cqueue::more(c.flags());
            }
        }
        drop(ring);
    }

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
