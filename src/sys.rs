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

/// The memory this process may use, in bytes: the smaller of the machine's `MemTotal` and the
/// memory limit of its cgroup (v2 `memory.max`, v1 `memory.limit_in_bytes`), `None` when neither
/// can be read. (Not a knob: `MAX_QUEUED_BYTES=auto` takes a share of it.)
pub fn memory_limit() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| mem_total(&s));
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| cgroup_limit(&s, |path| std::fs::read_to_string(path).ok()));
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// `MemTotal` from the text of `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    kib.checked_mul(1024)
}

/// The memory limit of the cgroup named in `proc_cgroup` (the text of `/proc/self/cgroup`), read
/// through `read` (`None`: no limit, `max`, or nothing readable).
fn cgroup_limit(proc_cgroup: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let (root, file) = if controllers.is_empty() {
            ("/sys/fs/cgroup", "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
        } else {
            continue;
        };
        // The cgroup's own file, or the namespace's root when the path is not visible (a
        // container). A limit no smaller than 2^60 is v1's way of saying none.
        let own = format!("{root}{}/{file}", path.trim_end_matches('/'));
        let text = read(&own).or_else(|| read(&format!("{root}/{file}")));
        if let Some(n) = text
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&n| n < 1 << 60)
        {
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limit_reads_meminfo_and_cgroups() {
        assert_eq!(
            mem_total("MemFree: 1 kB\nMemTotal:  2048 kB\n"),
            Some(2 << 20)
        );
        assert_eq!(mem_total("MemTotal: lots\n"), None);
        let v2 = |path: &str| (path == "/sys/fs/cgroup/app/memory.max").then(|| "1048576\n".into());
        assert_eq!(cgroup_limit("0::/app\n", v2), Some(1 << 20));
        let unlimited = |_: &str| Some("max\n".to_owned());
        assert_eq!(cgroup_limit("0::/app\n", unlimited), None);
        let v1 = |path: &str| {
            (path == "/sys/fs/cgroup/memory/svc/memory.limit_in_bytes").then(|| "4096".into())
        };
        assert_eq!(cgroup_limit("4:cpu:/x\n3:memory:/svc\n", v1), Some(4096));
        assert_eq!(cgroup_limit("garbage", |_| None), None);
        assert!(memory_limit().is_some_and(|m| m > 0));
    }
}
