//! What a worker gives back when it goes quiet: its pooled output buffers, the `POST /publish`
//! parse scratch, the driver's idle buffers (io_uring: the receive ring's pages) and the pages
//! the allocator holds freed but still resident (docs/OPERATIONS.md, "Returning memory to the
//! system").
//!
//! A quiet turn is one in which the driver reported nothing (the loop woke for a deadline or
//! `MAX_SLEEP`). A worker under load has none, so none of this runs on the hot path; a worker
//! whose clients went trims within a second or two.

use crate::app::App;
use crate::io::Driver;

use super::State;

/// A block this large gets an allocator page of its own, given back to the allocator's arena as
/// soon as it is dropped (mimalloc v3: blocks over `MI_LARGE_MAX_OBJ_SIZE`, 512 KiB, are "huge";
/// a huge page is freed at once instead of being retired).
const NUDGE_BYTES: usize = 1 << 20;

impl<A: App> State<A> {
    /// Called after a turn in which the driver reported nothing; does its work at most once per
    /// second.
    pub(super) fn trim_when_quiet<D: Driver>(&mut self, driver: &mut D) {
        if self.trimmed == Some(self.second) {
            return;
        }
        self.trimmed = Some(self.second);
        // The pool serves bursts (a fan-out hands a buffer per subscriber to the kernel); between
        // bursts it is memory no one uses. The next burst starts with fresh 4 KiB tails.
        if self.pool.capacity() > 0 {
            self.pool = Vec::new();
        }
        // The `POST /publish` parse scratch, grown by the largest body this worker parsed.
        self.routes.trim();
        // io_uring: the receive ring's touched pages (one `madvise`, only if anything was
        // received since the last trim).
        driver.trim();
        nudge_allocator();
    }
}

/// Lets mimalloc run the purges that fell due.
///
/// mimalloc gives freed pages back to the system (`MADV_DONTNEED`) `purge_delay` (1 s) after
/// they were freed, but it checks for due purges only when a thread frees an allocator page
/// (`_mi_page_free` → `_mi_arenas_collect` in its `page.c`). After the last frees of a burst a
/// quiet process frees no page, so what the burst freed would stay resident until the next
/// burst. Dropping a block of `NUDGE_BYTES`, which has a page of its own, frees a page: the
/// purges that are due run (for every thread's freed memory: the arenas are process-wide). Its
/// cost is one allocation and one free, at most once a second per worker, and only when the
/// worker is idle. (`mi_collect` would say this directly, but calling it needs `unsafe` FFI,
/// which wsd keeps to the io_uring driver and SIMD kernels; tests/memory.rs checks that the
/// memory does come back.)
fn nudge_allocator() {
    let block: Vec<u8> = Vec::with_capacity(NUDGE_BYTES);
    // `black_box`: an allocation that is never used may be removed by the optimizer.
    drop(std::hint::black_box(block));
}
