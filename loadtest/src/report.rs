//! Result output: the human-readable summary and the one-object JSON form of an echo run.

use std::fmt::Write as _;

use crate::driver::{Config, Outcome};
use crate::proc::{MachineSeconds, RssSpan};
use crate::stats::Errors;

/// The numbers of a finished run, derived once for both output forms.
pub struct Summary {
    pub url: String,
    pub connections: usize,
    pub connected: usize,
    pub payload: usize,
    pub binary: bool,
    pub in_flight: usize,
    /// How the sockets were driven (`epoll` or `uring`).
    pub io: &'static str,
    pub warmup_s: f64,
    pub measured_s: f64,
    pub messages: u64,
    pub msg_per_s: f64,
    /// p50, p90, p99, p99.9, max in µs (None without samples).
    pub latency_us: Option<[f64; 5]>,
    pub errors: Errors,
    pub server_pid: Option<u32>,
    pub server_cpu_s: Option<f64>,
    pub own_cpu_s: Option<f64>,
    /// Machine-wide CPU seconds by class over the window.
    pub machine: Option<MachineSeconds>,
    /// The server's resident memory over the run (with a PID).
    pub server_rss: Option<RssSpan>,
    pub clock_ticks: u64,
    pub warnings: Vec<String>,
}

impl Summary {
    pub fn new(url: &str, cfg: &Config, out: &Outcome, clock_ticks: u64) -> Self {
        let st = &out.stats;
        let measured_s = out.measured.as_secs_f64();
        let h = &st.latency_ns;
        let us = |ns: u64| ns as f64 / 1000.0;
        let latency_us = (!h.is_empty()).then(|| {
            [
                us(h.value_at_quantile(0.5)),
                us(h.value_at_quantile(0.9)),
                us(h.value_at_quantile(0.99)),
                us(h.value_at_quantile(0.999)),
                us(h.max()),
            ]
        });
        Self {
            url: url.to_string(),
            connections: cfg.connections,
            connected: out.connected,
            payload: cfg.size,
            binary: cfg.binary,
            in_flight: cfg.in_flight,
            io: match cfg.io {
                crate::driver::Io::Epoll => "epoll",
                crate::driver::Io::Uring => "uring",
            },
            warmup_s: cfg.warmup.as_secs_f64(),
            measured_s,
            messages: st.messages,
            msg_per_s: if measured_s > 0.0 {
                st.messages as f64 / measured_s
            } else {
                0.0
            },
            latency_us,
            errors: st.errors,
            server_pid: cfg.server_pid,
            server_cpu_s: out.server_cpu,
            own_cpu_s: out.own_cpu,
            machine: out.machine,
            server_rss: out.server_rss,
            clock_ticks,
            warnings: out.warnings.clone(),
        }
    }

    pub fn errors(&self) -> u64 {
        self.errors.total()
    }

    /// CPU µs per measured message.
    fn per_msg(&self, cpu_s: Option<f64>) -> Option<f64> {
        cpu_s
            .filter(|_| self.messages > 0)
            .map(|s| s * 1e6 / self.messages as f64)
    }

    /// Non-idle machine CPU seconds (tasks + irq + softirq) not charged to the server or this process:
    /// other processes, plus interrupt work done while neither was running. A busy machine spoils the numbers.
    pub fn other_cpu_s(&self) -> Option<f64> {
        let m = self.machine?;
        let busy = m.tasks + m.irq + m.softirq;
        Some((busy - self.server_cpu_s.unwrap_or(0.0) - self.own_cpu_s?).max(0.0))
    }

    pub fn human(&self) -> String {
        let mut o = String::new();
        let kind = if self.binary { "binary" } else { "text" };
        let _ = writeln!(o, "wsd-loadtest echo {}", self.url);
        let _ = writeln!(
            o,
            "  connections  {} requested, {} upgraded",
            self.connections, self.connected
        );
        let _ = writeln!(
            o,
            "  payload      {} B {kind}, {} in flight per connection; sockets on {}",
            self.payload, self.in_flight, self.io
        );
        let _ = writeln!(
            o,
            "  window       {:.2} s measured after {:.2} s warm-up",
            self.measured_s, self.warmup_s
        );
        let _ = writeln!(
            o,
            "  messages     {} echoed, {:.0} msg/s",
            self.messages, self.msg_per_s
        );
        match self.latency_us {
            Some([p50, p90, p99, p999, max]) => {
                let _ = writeln!(
                    o,
                    "  latency µs   p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  p99.9 {p999:.1}  max {max:.1}"
                );
            }
            None => {
                let _ = writeln!(o, "  latency µs   (no samples)");
            }
        }
        let _ = writeln!(
            o,
            "  errors       {} (connect failed {}, bad frames {}, closed {})",
            self.errors(),
            self.errors.connect_failed,
            self.errors.bad_frames,
            self.errors.closed
        );
        let cpu = |name: &str, s: Option<f64>, who: String| match (s, self.per_msg(s)) {
            (Some(s), Some(p)) => {
                format!("  {name}  {s:.2} s over the window, {p:.3} µs/msg{who}\n")
            }
            (Some(s), None) => format!("  {name}  {s:.2} s over the window{who}\n"),
            (None, _) => format!("  {name}  n/a{who}\n"),
        };
        if let Some(pid) = self.server_pid {
            o.push_str(&cpu(
                "server CPU ",
                self.server_cpu_s,
                format!(" (pid {pid})"),
            ));
            o.push_str(&RssSpan::human(self.server_rss));
        }
        o.push_str(&cpu("loadgen CPU", self.own_cpu_s, String::new()));
        if let Some(m) = self.machine {
            let per = self
                .per_msg(Some(m.softirq))
                .map_or(String::new(), |p| format!(" ({p:.3} µs/msg)"));
            let _ = writeln!(
                o,
                "  machine CPU  softirq {:.2} s{per}, irq {:.2} s, steal {:.2} s, idle {:.2} s; not charged to server or loadgen {:.2} s",
                m.softirq,
                m.irq,
                m.steal,
                m.idle,
                self.other_cpu_s().unwrap_or(0.0)
            );
        }
        let _ = writeln!(
            o,
            "  (CPU from /proc/PID/stat utime+stime at {} ticks/s)",
            self.clock_ticks
        );
        for w in &self.warnings {
            let _ = writeln!(o, "  warning: {w}");
        }
        o
    }

    pub fn json(&self) -> String {
        let num = |v: Option<f64>| v.map_or("null".to_string(), |x| format!("{x:.3}"));
        let lat = match self.latency_us {
            Some([p50, p90, p99, p999, max]) => format!(
                "{{\"p50\":{p50:.1},\"p90\":{p90:.1},\"p99\":{p99:.1},\"p99_9\":{p999:.1},\"max\":{max:.1}}}"
            ),
            None => "null".to_string(),
        };
        let warnings: Vec<String> = self.warnings.iter().map(|w| json_str(w)).collect();
        format!(
            "{{\"url\":{},\"connections\":{},\"connected\":{},\"payload_bytes\":{},\"binary\":{},\
             \"in_flight\":{},\"io\":\"{}\",\"warmup_s\":{:.3},\"measured_s\":{:.3},\"messages\":{},\"msg_per_s\":{:.1},\
             \"latency_us\":{lat},\"errors\":{},\"connect_failed\":{},\"bad_frames\":{},\"closed\":{},\
             \"server_pid\":{},\"server_cpu_s\":{},\"server_cpu_us_per_msg\":{},{},\
             \"loadgen_cpu_s\":{},\"loadgen_cpu_us_per_msg\":{},\"softirq_s\":{},\"softirq_us_per_msg\":{},\
             \"irq_s\":{},\"steal_s\":{},\"other_cpu_s\":{},\"idle_s\":{},\"clock_ticks_per_s\":{},\"warnings\":[{}]}}",
            json_str(&self.url),
            self.connections,
            self.connected,
            self.payload,
            self.binary,
            self.in_flight,
            self.io,
            self.warmup_s,
            self.measured_s,
            self.messages,
            self.msg_per_s,
            self.errors(),
            self.errors.connect_failed,
            self.errors.bad_frames,
            self.errors.closed,
            self.server_pid
                .map_or("null".to_string(), |p| p.to_string()),
            num(self.server_cpu_s),
            num(self.per_msg(self.server_cpu_s)),
            RssSpan::json_members(self.server_rss),
            num(self.own_cpu_s),
            num(self.per_msg(self.own_cpu_s)),
            num(self.machine.map(|m| m.softirq)),
            num(self.per_msg(self.machine.map(|m| m.softirq))),
            num(self.machine.map(|m| m.irq)),
            num(self.machine.map(|m| m.steal)),
            num(self.other_cpu_s()),
            num(self.machine.map(|m| m.idle)),
            self.clock_ticks,
            warnings.join(","),
        )
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
