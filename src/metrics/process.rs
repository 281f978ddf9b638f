//! The standard `process_*` metrics of a Prometheus exporter, read from `/proc` when a scrape
//! asks (nothing is kept or measured between scrapes): resident memory, open descriptors and
//! their limit, CPU time, start time.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector as PromCollector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The `process_*` families, in the order they appear (after every `wsd_*` one).
pub const PROCESS_FAMILIES: [&str; 6] = [
    "process_cpu_seconds",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
];

/// Encodes [`Process::read`] at scrape time.
#[derive(Debug)]
pub struct Collect;

impl PromCollector for Collect {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let p = Process::read();
        if let Some(cpu) = p.cpu_seconds {
            let counter = ConstCounter::new(cpu);
            let help = "Total user and system CPU time spent in seconds.";
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                help,
                None,
                MetricType::Counter,
            )?)?;
        }
        let gauges = [
            (
                "process_open_fds",
                "Number of open file descriptors.",
                p.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                p.max_fds.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                p.virtual_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.resident_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                p.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let sample = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(value).encode(sample)?;
            }
        }
        Ok(())
    }
}

/// What `/proc` says about this process at one moment. A value `/proc` could not give (a
/// sandbox without it) is `None` and its family is left out of the exposition.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Process {
    /// Resident set size in bytes (`/proc/self/stat` field 24, in pages).
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory size in bytes (field 23).
    pub virtual_memory_bytes: Option<u64>,
    /// User and system CPU time in seconds (fields 14 and 15, in clock ticks).
    pub cpu_seconds: Option<f64>,
    /// Start time in seconds since the Unix epoch (field 22, in ticks after boot, plus `btime`).
    pub start_time_seconds: Option<f64>,
    /// Entries of `/proc/self/fd`.
    pub open_fds: Option<u64>,
    /// The soft `RLIMIT_NOFILE`.
    pub max_fds: Option<u64>,
}

impl Process {
    /// Reads this process's figures now.
    pub fn read() -> Process {
        let ticks = clock_ticks();
        let page = rustix::param::page_size() as u64;
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().and_then(stat_fields);
        let field = |n: usize| -> Option<u64> { fields.as_ref()?.get(n)?.parse().ok() };
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count().saturating_sub(1) as u64); // the directory being read is one
        let max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        Process {
            resident_memory_bytes: field(24).map(|pages| pages.saturating_mul(page)),
            virtual_memory_bytes: field(23),
            cpu_seconds: ticks.and_then(|t| Some((field(14)? + field(15)?) as f64 / t)),
            start_time_seconds: ticks.and_then(|t| Some(boot? as f64 + field(22)? as f64 / t)),
            open_fds,
            max_fds,
        }
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, from the auxiliary vector), for `/proc`'s
/// CPU and start times.
fn clock_ticks() -> Option<f64> {
    let ticks = rustix::param::clock_ticks_per_second();
    (ticks > 0).then_some(ticks as f64)
}

/// The fields of `/proc/<pid>/stat`, numbered as in proc(5) (1: pid, 2: comm, 3: state, ...).
/// The command name may hold spaces and parentheses, so the fields after it are found after the
/// last `)`. Index 0 is unused.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (head, rest) = stat.rsplit_once(')')?;
    let pid = head.split_once(" (")?.0;
    let mut fields = vec!["", pid, ""];
    fields.extend(rest.split_ascii_whitespace());
    Some(fields)
}

/// `btime` from `/proc/stat`: the boot time in seconds since the Unix epoch.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Seconds since the Unix epoch now (for the tests' sanity bounds).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 \
                    12345 1000000 300 18446744073709551615";
        let f = stat_fields(stat).expect("fields");
        assert_eq!(f[1], "4242");
        assert_eq!(f[3], "S");
        assert_eq!(f[14], "250");
        assert_eq!(f[15], "50");
        assert_eq!(f[22], "12345");
        assert_eq!(f[23], "1000000");
        assert_eq!(f[24], "300");
        assert!(stat_fields("garbage").is_none());
    }

    #[test]
    fn boot_time_is_read_from_its_line() {
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        assert_eq!(boot_time("cpu 1 2 3\n"), None);
    }

    #[test]
    fn this_process_reads_plausible_values() {
        let p = Process::read();
        let rss = p.resident_memory_bytes.expect("rss");
        assert!(rss > 1 << 20, "a test binary holds more than 1 MiB: {rss}");
        assert!(p.virtual_memory_bytes.expect("vsz") >= rss);
        assert!(p.open_fds.expect("fds") >= 3, "stdin, stdout, stderr");
        assert!(p.max_fds.expect("limit") >= p.open_fds.expect("fds"));
        let start = p.start_time_seconds.expect("start");
        let now = unix_now();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "started within a day: {start} vs {now}"
        );
        assert!(p.cpu_seconds.expect("cpu") >= 0.0);
    }
}
