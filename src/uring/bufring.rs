//! The per-worker provided-buffer ring that multishot receives fill.
//!
//! Every connection's receive draws from this one pool, so an idle connection owns no read buffer
//! (DESIGN.md decision 4). A buffer is handed back to the kernel as soon as the worker has parsed it.

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use io_uring::types::BufRingEntry;

const PAGE: usize = 4096;

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
        };
        for bid in 0..entries {
            this.recycle(bid);
        }
        Ok(this)
    }

    /// Registers the ring with the kernel as buffer group `bgid` and publishes every buffer.
    pub fn register(&mut self, submitter: &Submitter<'_>, bgid: u16) -> io::Result<()> {
        // SAFETY: `self.ring` points to `entries` page-aligned `BufRingEntry`s that stay allocated
        // until `self` is dropped; the driver drops its io_uring (which releases the registration)
        // before this ring, and leaks the memory instead if receives are still in flight.
        unsafe {
            submitter.register_buf_ring_with_flags(
                self.ring.as_ptr() as u64,
                self.entries,
                bgid,
                0,
            )?;
        }
        self.publish();
        Ok(())
    }

    /// The first `len` bytes of buffer `bid`, which the kernel just filled and handed to us.
    pub fn filled(&mut self, bid: u16, len: usize) -> &mut [u8] {
        let bid = bid % self.entries;
        let len = len.min(self.buf_size as usize);
        let offset = usize::from(bid) * self.buf_size as usize;
        // SAFETY: `offset + len` lies inside the `entries * buf_size` allocation. The kernel gave
        // buffer `bid` to a completion and does not touch it again until `recycle(bid)` and
        // `publish()`, and `&mut self` keeps this the only reference until then.
        unsafe { std::slice::from_raw_parts_mut(self.bufs.as_ptr().add(offset), len) }
    }

    /// Queues buffer `bid` for the kernel again (visible after [`BufRing::publish`]).
    pub fn recycle(&mut self, bid: u16) {
        let bid = bid % self.entries;
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
