//! The provided-buffer ring that `echo --io uring`'s multishot receives fill: one pool for all
//! connections, each buffer handed back to the kernel as soon as its bytes are parsed.

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use io_uring::types::BufRingEntry;

const PAGE: usize = 4096;

/// `entries` buffers of `buf_size` bytes, registered as one buffer group.
pub struct BufRing {
    ring: NonNull<BufRingEntry>,
    ring_layout: Layout,
    bufs: NonNull<u8>,
    bufs_layout: Layout,
    entries: u16,
    buf_size: u32,
    tail: u16,
}

impl BufRing {
    /// Allocates the ring and its buffers, queues every buffer and registers the ring with the
    /// kernel as group `bgid`. `entries` must be a power of two, at most 32768.
    pub fn new(
        submitter: &Submitter<'_>,
        bgid: u16,
        entries: u16,
        buf_size: u32,
    ) -> Result<Self, String> {
        if !entries.is_power_of_two() || entries > 32768 || buf_size == 0 {
            return Err("bad buffer ring size".into());
        }
        let too_large = |_| "buffer ring too large".to_string();
        let ring_layout =
            Layout::from_size_align(usize::from(entries) * size_of::<BufRingEntry>(), PAGE)
                .map_err(too_large)?;
        let bufs_layout = Layout::from_size_align(usize::from(entries) * buf_size as usize, PAGE)
            .map_err(too_large)?;
        // SAFETY: both layouts have a non-zero size (entries >= 1, buf_size >= 1).
        let ring = NonNull::new(unsafe { alloc_zeroed(ring_layout) }.cast::<BufRingEntry>());
        // SAFETY: as above.
        let bufs = NonNull::new(unsafe { alloc(bufs_layout) });
        let (Some(ring), Some(bufs)) = (ring, bufs) else {
            return Err("buffer ring allocation failed".into());
        };
        let mut this = BufRing {
            ring,
            ring_layout,
            bufs,
            bufs_layout,
            entries,
            buf_size,
            tail: 0,
        };
        for bid in 0..entries {
            this.recycle(bid);
        }
        // SAFETY: `ring` points to `entries` page-aligned entries that stay allocated until this
        // value is dropped, and the caller drops its io_uring (which ends the registration) first.
        unsafe { submitter.register_buf_ring_with_flags(ring.as_ptr() as u64, entries, bgid, 0) }
            .map_err(|e| format!("IORING_REGISTER_PBUF_RING: {e}"))?;
        this.publish();
        Ok(this)
    }

    /// The first `len` bytes of buffer `bid`, which a completion just handed over.
    pub fn filled(&mut self, bid: u16, len: usize) -> &[u8] {
        let bid = bid % self.entries;
        let len = len.min(self.buf_size as usize);
        let offset = usize::from(bid) * self.buf_size as usize;
        // SAFETY: the range lies inside buffer `bid` of the `entries * buf_size` allocation; the
        // kernel wrote it before posting the completion and does not touch the buffer again until
        // `recycle(bid)` and `publish()`, and `&mut self` keeps this the only reference meanwhile.
        unsafe { std::slice::from_raw_parts(self.bufs.as_ptr().add(offset), len) }
    }

    /// Queues buffer `bid` for the kernel again (visible after [`BufRing::publish`]).
    pub fn recycle(&mut self, bid: u16) {
        let bid = bid % self.entries;
        let slot = usize::from(self.tail & (self.entries - 1));
        // SAFETY: `slot < entries`, inside the ring allocation; the kernel reads entries only up
        // to the published tail, and this slot lies past it until `publish`.
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
        // SAFETY: the tail field lives inside the first ring entry, which is allocated, aligned for
        // u16 and shared with the kernel only through atomic access on both sides.
        let tail =
            unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.ring.as_ptr()).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both pointers came from `alloc`/`alloc_zeroed` with exactly these layouts, and
        // the owner drops (or leaks) this only once the kernel no longer uses the ring.
        unsafe {
            dealloc(self.ring.as_ptr().cast(), self.ring_layout);
            dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}
