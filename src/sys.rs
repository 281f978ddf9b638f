//! What wsd asks of the operating system for the whole process: the CPUs it may use and worker
//! pinning, the open file limit, transparent huge pages.

use std::io;

use tracing::warn;

/// Turns transparent huge pages off for this process (`PR_SET_THP_DISABLE`; it applies to the
/// whole process and to memory faulted in from now on).
///
/// mimalloc asks for huge pages on its arena (`MADV_HUGEPAGE`), so with THP in `madvise` or
/// `always` mode every first touch of a 2 MiB region of the heap makes 2 MiB resident. A worker's
/// per-connection state is a few hundred bytes spread over several size classes, so idle memory
/// grew in 2 MiB steps: 10,000 idle connections measured 1.20 KiB each with huge pages and 0.54
/// KiB without (medians of 3), and the idle server 11.6 MiB instead of 4.0 MiB (BENCHMARKS.md).
/// The heap's working set is small (the receive rings are the largest part), so the TLB gain is
/// not worth it.
pub fn disable_transparent_huge_pages() -> io::Result<()> {
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (every connection is a
/// descriptor) and returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit)?;
    }
    Ok(limit.current.unwrap_or(u64::MAX))
}

/// This process's soft `RLIMIT_NOFILE` (`u64::MAX` when unlimited).
pub fn nofile_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// Pins the calling thread to `cpu` (a warning if the kernel refuses).
pub fn pin_to(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        warn!(cpu, error = %e, "cannot pin worker to its CPU");
    }
}
