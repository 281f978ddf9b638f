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

/// The `VmRSS` line of a /proc/PID/status text, in KiB.
pub fn parse_vm_rss_kib(status: &str) -> Result<u64, String> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| "no VmRSS line".to_string())?;
    let mut f = line["VmRSS:".len()..].split_ascii_whitespace();
    let v = f.next().ok_or_else(|| "empty VmRSS line".to_string())?;
    if f.next() != Some("kB") {
        return Err(format!("VmRSS line {line:?} is not in kB"));
    }
    v.parse::<u64>().map_err(|e| format!("VmRSS {v:?}: {e}"))
}

/// Resident set size of process `pid` from /proc/PID/status, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_vm_rss_kib(&status).map_err(|e| format!("{path}: {e}"))
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
        assert_eq!(parse_vm_rss_kib(status), Ok(4242));
        assert!(parse_vm_rss_kib("Name: x\n").is_err());
        assert!(parse_vm_rss_kib("VmRSS: 12 MB\n").is_err());
        assert!(rss_kib(std::process::id()).is_ok_and(|k| k > 0));
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
