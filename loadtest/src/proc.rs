//! Process environment: CPU time of a process (/proc/PID/stat) and of the machine (/proc/stat), resident memory (/proc/PID/status), the clock tick, and raising RLIMIT_NOFILE.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Clock ticks per second used by /proc/PID/stat (`getconf CLK_TCK`; from the auxiliary vector via rustix).
pub fn clock_ticks_per_second() -> u64 {
    match rustix::param::clock_ticks_per_second() {
        0 => 100,
        n => n,
    }
}

/// utime + stime of a /proc/PID/stat line, in clock ticks.
///
/// The command name (field 2) is in parentheses and may itself contain spaces and parentheses,
/// so fields are counted from the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Result<u64, String> {
    let close = stat
        .rfind(')')
        .ok_or_else(|| "no ')' after the command name".to_string())?;
    // After the command name: field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let mut fields = stat[close + 1..].split_ascii_whitespace().skip(11);
    let mut next = |name: &str| -> Result<u64, String> {
        let f = fields
            .next()
            .ok_or_else(|| format!("{name} field missing"))?;
        f.parse::<u64>()
            .map_err(|e| format!("{name} field {f:?}: {e}"))
    };
    let utime = next("utime")?;
    let stime = next("stime")?;
    Ok(utime + stime)
}

/// CPU time (user + system, all threads) consumed so far by process `pid` (`None` = this process), in seconds.
pub fn cpu_seconds(pid: Option<u32>) -> Result<f64, String> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let ticks = parse_cpu_ticks(&stat).map_err(|e| format!("{path}: {e}"))?;
    Ok(ticks as f64 / clock_ticks_per_second() as f64)
}

/// Machine-wide CPU time from the aggregate `cpu` line of /proc/stat, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineTicks {
    /// user + nice + system. With tick-based accounting (no CONFIG_IRQ_TIME_ACCOUNTING) softirq work
    /// done inside a task is counted here as softirq, but still in that task's own utime/stime.
    pub tasks: u64,
    pub irq: u64,
    pub softirq: u64,
    /// Time the hypervisor gave to someone else.
    pub steal: u64,
    /// idle + iowait.
    pub idle: u64,
}

/// Parses the aggregate `cpu ` line of /proc/stat.
pub fn parse_machine_ticks(stat: &str) -> Result<MachineTicks, String> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| "no aggregate cpu line".to_string())?;
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(|f| {
            f.parse::<u64>()
                .map_err(|e| format!("cpu field {f:?}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    if v.len() < 8 {
        return Err(format!(
            "cpu line has {} fields, expected at least 8",
            v.len()
        ));
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice] (guest is already in user).
    Ok(MachineTicks {
        tasks: v[0] + v[1] + v[2],
        idle: v[3] + v[4],
        irq: v[5],
        softirq: v[6],
        steal: v[7],
    })
}

/// Machine-wide CPU ticks so far.
pub fn machine_ticks() -> Result<MachineTicks, String> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    parse_machine_ticks(&stat).map_err(|e| format!("/proc/stat: {e}"))
}

/// Machine-wide CPU seconds between two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MachineSeconds {
    pub tasks: f64,
    pub irq: f64,
    pub softirq: f64,
    pub steal: f64,
    pub idle: f64,
}

impl MachineTicks {
    /// Seconds elapsed in each class from `self` to `later`.
    pub fn seconds_until(&self, later: &MachineTicks) -> MachineSeconds {
        let hz = clock_ticks_per_second() as f64;
        let d = |a: u64, b: u64| b.saturating_sub(a) as f64 / hz;
        MachineSeconds {
            tasks: d(self.tasks, later.tasks),
            irq: d(self.irq, later.irq),
            softirq: d(self.softirq, later.softirq),
            steal: d(self.steal, later.steal),
            idle: d(self.idle, later.idle),
        }
    }
}

/// A `Vm*:` line (e.g. `VmRSS:`, `VmHWM:`) of a /proc/PID/status text, in KiB.
fn parse_status_kib(status: &str, key: &str) -> Result<u64, String> {
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .ok_or_else(|| format!("no {key} line"))?;
    let mut f = line[key.len()..].split_ascii_whitespace();
    let v = f.next().ok_or_else(|| format!("empty {key} line"))?;
    if f.next() != Some("kB") {
        return Err(format!("{key} line {line:?} is not in kB"));
    }
    v.parse::<u64>().map_err(|e| format!("{key} {v:?}: {e}"))
}

fn read_status(pid: u32) -> Result<(String, String), String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    Ok((path, status))
}

/// Resident memory of a process at one instant: VmRSS, and VmHWM (the most it has had resident
/// since it started), both in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rss {
    pub now_kib: u64,
    pub peak_kib: u64,
}

/// [`Rss`] from a /proc/PID/status text.
pub fn parse_rss(status: &str) -> Result<Rss, String> {
    Ok(Rss {
        now_kib: parse_status_kib(status, "VmRSS:")?,
        peak_kib: parse_status_kib(status, "VmHWM:")?,
    })
}

/// [`Rss`] of process `pid`.
pub fn rss(pid: u32) -> Result<Rss, String> {
    let (path, status) = read_status(pid)?;
    parse_rss(&status).map_err(|e| format!("{path}: {e}"))
}

/// The server's resident memory over a run: VmRSS when the scenario started (before it opened any
/// connection) and when the measured window ended, and VmHWM at the end (the server's peak since
/// it started, so it includes anything before the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssSpan {
    pub start_kib: u64,
    pub end_kib: u64,
    pub peak_kib: u64,
}

impl RssSpan {
    /// The span from a reading at the start and one at the end.
    pub fn new(start: Rss, end: Rss) -> Self {
        RssSpan {
            start_kib: start.now_kib,
            end_kib: end.now_kib,
            peak_kib: end.peak_kib.max(start.peak_kib),
        }
    }

    /// Reads the end of the span for `pid` given its `start`; a failure becomes a warning.
    pub fn finish(
        pid: Option<u32>,
        start: Option<Rss>,
        warnings: &mut Vec<String>,
    ) -> Option<Self> {
        let (pid, start) = (pid?, start?);
        match rss(pid) {
            Ok(end) => Some(RssSpan::new(start, end)),
            Err(e) => {
                warnings.push(e);
                None
            }
        }
    }

    /// One line for the human-readable reports (`None`: n/a).
    pub fn human(span: Option<Self>) -> String {
        match span {
            Some(s) => format!(
                "  server RSS   {} KiB at start, {} KiB at end ({:+} KiB), peak {} KiB (VmHWM)\n",
                s.start_kib,
                s.end_kib,
                s.end_kib as i64 - s.start_kib as i64,
                s.peak_kib
            ),
            None => "  server RSS   n/a\n".to_string(),
        }
    }

    /// The JSON members `"server_rss_start_kib":..,"server_rss_end_kib":..,"server_rss_peak_kib":..`
    /// (nulls without a reading).
    pub fn json_members(span: Option<Self>) -> String {
        let f = |v: Option<u64>| v.map_or("null".to_string(), |k| k.to_string());
        format!(
            "\"server_rss_start_kib\":{},\"server_rss_end_kib\":{},\"server_rss_peak_kib\":{}",
            f(span.map(|s| s.start_kib)),
            f(span.map(|s| s.end_kib)),
            f(span.map(|s| s.peak_kib))
        )
    }
}

/// Raises the soft limit on open files to the hard limit; returns the soft limit now in force.
pub fn raise_nofile_limit() -> Result<Option<u64>, String> {
    let lim = getrlimit(Resource::Nofile);
    if lim.current == lim.maximum {
        return Ok(lim.current);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    )
    .map_err(|e| format!("setrlimit(RLIMIT_NOFILE): {e}"))?;
    Ok(getrlimit(Resource::Nofile).current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_with_spaces_and_parentheses() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        let line = "4242 (my (weird) name) x) S 1 4242 4242 0 -1 4194560 1200 0 3 0 1234 567 8 9 20 0 3 0 100 1000000 200 18446744073709551615\n";
        assert_eq!(parse_cpu_ticks(line), Ok(1234 + 567));
        let plain = "1 (wsd) R 0 1 1 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_cpu_ticks(plain), Ok(30));
    }

    #[test]
    fn machine_line_is_summed_by_class() {
        let stat = "cpu  100 5 20 1000 7 3 40 2 9 0\ncpu0 50 0 10 500 3 1 20 1 0 0\nintr 1\n";
        assert_eq!(
            parse_machine_ticks(stat),
            Ok(MachineTicks {
                tasks: 125,
                idle: 1007,
                irq: 3,
                softirq: 40,
                steal: 2
            })
        );
        assert!(parse_machine_ticks("cpu0 1 2 3 4 5 6 7 8\n").is_err());
        assert!(parse_machine_ticks("cpu  1 2 3\n").is_err());
        let a = MachineTicks::default();
        let b = MachineTicks {
            softirq: clock_ticks_per_second(),
            ..a
        };
        assert_eq!(a.seconds_until(&b).softirq, 1.0);
        assert!(machine_ticks().is_ok());
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(parse_cpu_ticks("no parens here").is_err());
        assert!(parse_cpu_ticks("1 (x) S 1 2 3").is_err());
        assert!(parse_cpu_ticks("1 (x) S 1 1 1 0 -1 0 0 0 0 0 ab 20").is_err());
    }

    #[test]
    fn vm_rss_is_parsed_in_kib() {
        let status = "Name:\twsd\nVmPeak:\t  9000 kB\nVmRSS:\t    4242 kB\nThreads:\t1\n";
        assert_eq!(parse_status_kib(status, "VmRSS:"), Ok(4242));
        assert!(parse_status_kib("Name: x\n", "VmRSS:").is_err());
        assert!(parse_status_kib("VmRSS: 12 MB\n", "VmRSS:").is_err());
        assert!(rss(std::process::id()).is_ok_and(|r| r.now_kib > 0));
    }

    #[test]
    fn rss_span_reads_now_and_peak() {
        let status = "Name:\twsd\nVmHWM:\t  5000 kB\nVmRSS:\t    4242 kB\n";
        let start = parse_rss(status).expect("parses");
        assert_eq!(
            start,
            Rss {
                now_kib: 4242,
                peak_kib: 5000
            }
        );
        assert!(parse_rss("VmRSS:\t1 kB\n").is_err(), "VmHWM is required");
        let end = Rss {
            now_kib: 6000,
            peak_kib: 7000,
        };
        let span = RssSpan::new(start, end);
        assert_eq!(
            (span.start_kib, span.end_kib, span.peak_kib),
            (4242, 6000, 7000)
        );
        assert_eq!(
            RssSpan::json_members(Some(span)),
            "\"server_rss_start_kib\":4242,\"server_rss_end_kib\":6000,\"server_rss_peak_kib\":7000"
        );
        assert!(RssSpan::json_members(None).contains("\"server_rss_end_kib\":null"));
        assert!(RssSpan::human(Some(span)).contains("(+1758 KiB)"));
        let own = rss(std::process::id()).expect("own status");
        assert!(own.now_kib > 0 && own.peak_kib >= own.now_kib);
        let mut warnings = Vec::new();
        assert!(RssSpan::finish(Some(std::process::id()), Some(own), &mut warnings).is_some());
        assert!(RssSpan::finish(None, Some(own), &mut warnings).is_none());
        assert!(warnings.is_empty());
    }

    #[test]
    fn own_cpu_time_is_readable() {
        let s = cpu_seconds(None).expect("/proc/self/stat");
        assert!(s >= 0.0);
        assert!(clock_ticks_per_second() > 0);
        let pid = std::process::id();
        assert!(cpu_seconds(Some(pid)).is_ok());
    }
}
