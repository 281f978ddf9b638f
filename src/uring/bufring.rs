//! The per-worker provided-buffer ring that multishot receives fill.
//!
//! Every connection's receive draws from this one pool, so an idle connection owns no read buffer
//! (docs/DESIGN.md decision 4). A buffer is handed back to the kernel as soon as the worker has parsed it.
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
    pub fn register(&mut self, submitter: &Submitter<'_>, bgid: u16) -> io::Result<()> {
        let mut result = Err(io::Error::from(io::ErrorKind::Unsupported));
        for flags in [IOU_PBUF_RING_INC, 0] {
            // SAFETY: `self.ring` points to `entries` page-aligned `BufRingEntry`s that stay
            // allocated until `self` is dropped. The kernel reads them only for a receive in
            // flight: the driver leaks this memory instead of dropping it if any receive is still
            // in flight when it goes, and without one nothing can use the registration again, even
            // if a MSG_RING waker keeps the ring itself open (no new receive can be submitted).
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
    pub fn is_incremental(&self) -> bool {
        self.incremental
    }

    /// The `len` bytes the kernel just received into buffer `bid`. `more` is the completion's
    /// BUF_MORE flag: the kernel keeps filling this buffer after these bytes (incremental mode).
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
        // driver guarantees the kernel no longer uses them (or leaks the ring instead of dropping).
        unsafe {
            dealloc(self.ring.as_ptr().cast(), self.ring_layout);
            dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}
