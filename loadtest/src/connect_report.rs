//! Output of the `connect` scenario: connects/s, handshake latency, and the server's RSS delta per idle connection, as text or one JSON object.

use std::fmt::Write as _;

use crate::connect::{Config, Outcome};
use crate::report::json_str;
use crate::stats::{percentiles_json, percentiles_line, percentiles_us};

/// Derived figures of a finished `connect` run.
pub struct Summary<'a> {
    pub url: &'a str,
    pub cfg: &'a Config,
    pub out: &'a Outcome,
}

impl Summary<'_> {
    pub fn connects_per_s(&self) -> f64 {
        let s = self.out.connect_time.as_secs_f64();
        if s > 0.0 {
            self.out.connected as f64 / s
        } else {
            0.0
        }
    }

    /// Connections still open when memory was read after the hold.
    pub fn held(&self) -> usize {
        self.out.connected.saturating_sub(self.out.dropped)
    }

    /// Server RSS growth per held connection, in KiB.
    pub fn kib_per_conn(&self) -> Option<f64> {
        let d = self.out.rss_after_kib as f64 - self.out.rss_before_kib as f64;
        (self.held() > 0).then(|| d / self.held() as f64)
    }

    fn per_connect_us(&self, cpu: Option<f64>) -> Option<f64> {
        cpu.filter(|_| self.out.connected > 0)
            .map(|s| s * 1e6 / self.out.connected as f64)
    }

    /// Failed connects plus connections dropped while held.
    pub fn errors(&self) -> usize {
        self.out.failed + self.out.dropped
    }

    pub fn human(&self) -> String {
        let (c, o) = (self.cfg, self.out);
        let opt =
            |v: Option<f64>, unit: &str| v.map_or("n/a".to_string(), |v| format!("{v:.2}{unit}"));
        let mut s = String::new();
        let _ = writeln!(s, "wsd-loadtest connect {}", self.url);
        let _ = writeln!(
            s,
            "  connections  {} requested, {} upgraded, {} failed, at most {} handshakes in flight",
            c.connections, o.connected, o.failed, c.concurrency
        );
        let _ = writeln!(
            s,
            "  rate         {:.0} connects/s ({:.3} s from first connect to last upgrade)",
            self.connects_per_s(),
            o.connect_time.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "  handshake µs {}",
            percentiles_line(percentiles_us(&o.handshake_ns))
        );
        let _ = writeln!(
            s,
            "  server RSS   {} KiB before, {} KiB after {:.1} s idle with {} open: {} per connection; peak {} KiB (VmHWM)",
            o.rss_before_kib,
            o.rss_after_kib,
            c.settle.as_secs_f64(),
            self.held(),
            opt(self.kib_per_conn(), " KiB"),
            o.rss_peak_kib
        );
        let _ = writeln!(
            s,
            "  CPU          server {} µs/connect, loadgen {} µs/connect (connect phase)",
            opt(self.per_connect_us(o.server_cpu_s), ""),
            opt(self.per_connect_us(o.own_cpu_s), "")
        );
        let _ = writeln!(s, "  dropped      {} while held idle", o.dropped);
        if let Some(e) = &o.first_error {
            let _ = writeln!(s, "  first error  {e}");
        }
        s
    }

    pub fn json(&self) -> String {
        let (c, o) = (self.cfg, self.out);
        let num = |v: Option<f64>| v.map_or("null".to_string(), |x| format!("{x:.3}"));
        format!(
            "{{\"scenario\":\"connect\",\"url\":{},\"connections\":{},\"concurrency\":{},\"connected\":{},\
             \"failed\":{},\"dropped\":{},\"errors\":{},\"connect_s\":{:.3},\"connects_per_s\":{:.1},\
             \"handshake_us\":{},\"settle_s\":{:.3},\"held\":{},\"rss_before_kib\":{},\"rss_after_kib\":{},\
             \"rss_peak_kib\":{},\"rss_kib_per_conn\":{},\"server_pid\":{},\"server_cpu_us_per_connect\":{},\
             \"loadgen_cpu_us_per_connect\":{},\"first_error\":{}}}",
            json_str(self.url),
            c.connections,
            c.concurrency,
            o.connected,
            o.failed,
            o.dropped,
            self.errors(),
            o.connect_time.as_secs_f64(),
            self.connects_per_s(),
            percentiles_json(percentiles_us(&o.handshake_ns)),
            c.settle.as_secs_f64(),
            self.held(),
            o.rss_before_kib,
            o.rss_after_kib,
            o.rss_peak_kib,
            num(self.kib_per_conn()),
            c.server_pid,
            num(self.per_connect_us(o.server_cpu_s)),
            num(self.per_connect_us(o.own_cpu_s)),
            o.first_error
                .as_deref()
                .map_or("null".to_string(), json_str),
        )
    }
}
