//! Output of the `fanout` scenario: deliveries/s, publish→delivery latency, loss / duplication / reordering, and server CPU per delivery, as text or one JSON object.

use std::fmt::Write as _;

use super::{Config, Outcome};
use crate::proc::RssSpan;
use crate::report::json_str;
use crate::stats::{percentiles_json, percentiles_line, percentiles_us};

/// A finished fan-out run and the figures derived from it.
pub struct Summary<'a> {
    pub url: &'a str,
    pub cfg: &'a Config,
    pub out: &'a Outcome,
}

impl Summary<'_> {
    fn secs(&self) -> f64 {
        self.out.measured.as_secs_f64()
    }

    pub fn deliveries_per_s(&self) -> f64 {
        if self.secs() > 0.0 {
            self.out.deliveries.measured as f64 / self.secs()
        } else {
            0.0
        }
    }

    fn per_delivery_us(&self, cpu: Option<f64>) -> Option<f64> {
        let d = self.out.deliveries.measured;
        cpu.filter(|_| d > 0).map(|s| s * 1e6 / d as f64)
    }

    /// Measured deliveries per second of server CPU time.
    pub fn per_server_cpu_s(&self) -> Option<f64> {
        self.out
            .server_cpu
            .filter(|&s| s > 0.0)
            .map(|s| self.out.deliveries.measured as f64 / s)
    }

    /// Everything that makes the run fail: failed or closed connections, server errors, deliveries that
    /// should not have happened, corrupt timestamps, and lost, duplicated or reordered messages.
    pub fn errors(&self) -> u64 {
        let c = &self.out.counts;
        c.connect_failed
            + c.closed
            + c.server_errors
            + c.unexpected
            + self.out.deliveries.bad_ts
            + self.out.lost
            + self.out.duplicates
            + self.out.reordered
    }

    fn mode(&self) -> String {
        let c = self.cfg;
        let lp = match c.rate {
            Some(r) => format!(
                "open loop at {r:.0} publications/s (window {} caps the lag)",
                c.window
            ),
            None => format!("closed loop, window {} per publisher", c.window),
        };
        let kind = if c.raw {
            if c.raw_self {
                "raw data, publishers receive their own"
            } else {
                "raw data"
            }
        } else {
            "PUBLISH envelopes"
        };
        format!("{kind}, {lp}")
    }

    pub fn human(&self) -> String {
        let (c, o) = (self.cfg, self.out);
        let d = &o.deliveries;
        let opt =
            |v: Option<f64>, prec: usize| v.map_or("n/a".to_string(), |v| format!("{v:.prec$}"));
        let mut s = String::new();
        let _ = writeln!(s, "wsd-loadtest fanout {}", self.url);
        let _ = writeln!(
            s,
            "  setup        {} subscribers over {} topics, {} publishers; {} of {} connected",
            c.subscribers,
            c.topics,
            c.publishers,
            o.connected,
            c.subscribers + c.publishers
        );
        let _ = writeln!(s, "  mode         {}, data ≥ {} B", self.mode(), c.size);
        let _ = writeln!(
            s,
            "  window       {:.2} s measured after {:.2} s warm-up",
            self.secs(),
            c.warmup.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "  deliveries   {} measured, {:.0}/s ({} publications in the window); {} in warm-up, {} while draining",
            d.measured,
            self.deliveries_per_s(),
            o.published_measured,
            d.warmup,
            d.drain
        );
        let _ = writeln!(
            s,
            "  wire         {:.0} bytes per delivery (data frames as received); permessage-deflate agreed on {} of {} connections",
            self.wire_per_delivery(),
            o.deflate_agreed,
            o.connected
        );
        let _ = writeln!(
            s,
            "  latency µs   {}",
            percentiles_line(percentiles_us(&d.latency_ns))
        );
        let _ = writeln!(
            s,
            "  integrity    {} expected, {} lost, {} duplicated, {} reordered; {} recipients incomplete after {:.2} s",
            o.expected,
            o.lost,
            o.duplicates,
            o.reordered,
            o.incomplete_recipients,
            o.drain_took.as_secs_f64()
        );
        let k = &o.counts;
        let _ = writeln!(
            s,
            "  errors       connect failed {}, closed {}, server ERROR {}, unexpected deliveries {}, bad timestamps {}; pings answered {}",
            k.connect_failed, k.closed, k.server_errors, k.unexpected, d.bad_ts, k.pings
        );
        if let Some(pid) = c.server_pid {
            let _ = writeln!(
                s,
                "  server CPU   {} s, {} µs/delivery, {} deliveries per CPU-second (pid {pid})",
                opt(o.server_cpu, 2),
                opt(self.per_delivery_us(o.server_cpu), 3),
                opt(self.per_server_cpu_s(), 0)
            );
            s.push_str(&RssSpan::human(o.server_rss));
        }
        let _ = writeln!(
            s,
            "  loadgen CPU  {} s, {} µs/delivery",
            opt(o.own_cpu, 2),
            opt(self.per_delivery_us(o.own_cpu), 3)
        );
        if let Some(e) = &k.first_error {
            let _ = writeln!(s, "  first error  {e}");
        }
        for w in &o.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        s
    }

    /// Bytes of data frames received per delivery, over the whole run.
    pub fn wire_per_delivery(&self) -> f64 {
        let total = self.out.deliveries.total();
        if total == 0 {
            0.0
        } else {
            self.out.wire_bytes as f64 / total as f64
        }
    }

    pub fn json(&self) -> String {
        let (c, o) = (self.cfg, self.out);
        let d = &o.deliveries;
        let k = &o.counts;
        let num = |v: Option<f64>| v.map_or("null".to_string(), |x| format!("{x:.3}"));
        let warnings: Vec<String> = o.warnings.iter().map(|w| json_str(w)).collect();
        format!(
            "{{\"scenario\":\"fanout\",\"url\":{},\"subscribers\":{},\"publishers\":{},\"topics\":{},\"window\":{},\
             \"rate\":{},\"raw\":{},\"raw_self\":{},\"size\":{},\"connected\":{},\"warmup_s\":{:.3},\"measured_s\":{:.3},\
             \"deliveries\":{},\"deliveries_per_s\":{:.1},\"warmup_deliveries\":{},\"drain_deliveries\":{},\
             \"published\":{},\"published_measured\":{},\"latency_us\":{},\"expected\":{},\"lost\":{},\"duplicates\":{},\
             \"reordered\":{},\"incomplete_recipients\":{},\"drain_s\":{:.3},\"connect_failed\":{},\"closed\":{},\
             \"server_errors\":{},\"unexpected\":{},\"bad_ts\":{},\"pings\":{},\"errors\":{},\"server_pid\":{},\
             \"server_cpu_s\":{},\"server_cpu_us_per_delivery\":{},\"deliveries_per_server_cpu_s\":{},{},\
             \"loadgen_cpu_s\":{},\"loadgen_cpu_us_per_delivery\":{},\"other_cpu_s\":{},\"compression\":{},\
             \"deflate_agreed\":{},\"wire_bytes\":{},\"wire_bytes_per_delivery\":{:.1},\"first_error\":{},\"warnings\":[{}]}}",
            json_str(self.url),
            c.subscribers,
            c.publishers,
            c.topics,
            c.window,
            num(c.rate),
            c.raw,
            c.raw_self,
            c.size,
            o.connected,
            c.warmup.as_secs_f64(),
            self.secs(),
            d.measured,
            self.deliveries_per_s(),
            d.warmup,
            d.drain,
            o.published,
            o.published_measured,
            percentiles_json(percentiles_us(&d.latency_ns)),
            o.expected,
            o.lost,
            o.duplicates,
            o.reordered,
            o.incomplete_recipients,
            o.drain_took.as_secs_f64(),
            k.connect_failed,
            k.closed,
            k.server_errors,
            k.unexpected,
            d.bad_ts,
            k.pings,
            self.errors(),
            c.server_pid.map_or("null".to_string(), |p| p.to_string()),
            num(o.server_cpu),
            num(self.per_delivery_us(o.server_cpu)),
            num(self.per_server_cpu_s()),
            RssSpan::json_members(o.server_rss),
            num(o.own_cpu),
            num(self.per_delivery_us(o.own_cpu)),
            num(o.other_cpu),
            c.compression,
            o.deflate_agreed,
            o.wire_bytes,
            self.wire_per_delivery(),
            k.first_error
                .as_deref()
                .map_or("null".to_string(), json_str),
            warnings.join(","),
        )
    }
}
