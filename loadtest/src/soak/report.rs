//! Output of the `soak` scenario, as text or one JSON object, and what fails it.

use super::{Config, Outcome};
use crate::report::json_str;

/// A finished soak run.
pub struct Summary<'a> {
    pub url: &'a str,
    pub cfg: &'a Config,
    pub out: &'a Outcome,
}

impl Summary<'_> {
    /// Descriptors the server still holds after every client closed, over its baseline.
    pub fn fd_leak(&self) -> u64 {
        self.out.fds_after.saturating_sub(self.out.fds_before)
    }

    /// Lost deliveries the server's declared drops do not explain.
    pub fn unexplained_loss(&self) -> u64 {
        self.out.pairs.lost.saturating_sub(self.out.declared_drops)
    }

    /// Why the run failed, if it did.
    pub fn failures(&self) -> Vec<String> {
        let o = self.out;
        let mut f = Vec::new();
        if o.errors > 0 {
            f.push(format!(
                "{} connection errors, the first: {}",
                o.errors,
                o.first_error.as_deref().unwrap_or("?")
            ));
        }
        if self.unexplained_loss() > 0 {
            f.push(format!(
                "{} deliveries lost, {} declared dropped by the server",
                o.pairs.lost, o.declared_drops
            ));
        }
        if o.pairs.duplicates > 0 || o.pairs.reordered > 0 {
            f.push(format!(
                "{} duplicated and {} reordered deliveries",
                o.pairs.duplicates, o.pairs.reordered
            ));
        }
        if self.fd_leak() > 0 {
            f.push(format!(
                "the server holds {} descriptors more than before the run ({} → {})",
                self.fd_leak(),
                o.fds_before,
                o.fds_after
            ));
        }
        if let (Some(max), Some(s)) = (self.cfg.max_rss_slope, o.rss_slope)
            && s > max
        {
            f.push(format!(
                "server RSS grew {s:.0} KiB/min after warm-up (limit {max:.0})"
            ));
        }
        if o.published == 0 {
            f.push("nothing was published".into());
        }
        f
    }

    pub fn human(&self) -> String {
        let (c, o) = (self.cfg, self.out);
        let secs = o.ran.as_secs_f64().max(1e-9);
        let fmt_slope = o
            .rss_slope
            .map_or("n/a".to_string(), |s| format!("{s:+.0} KiB/min"));
        let mut s = format!(
            "soak {}: {} connections ({} publishers, {} subscribers, {} topics), {:.0} pub/s, {} reconnects/s, {:.0} s\n",
            self.url,
            c.connections,
            c.publishers,
            c.subscribers(),
            c.topics,
            c.rate,
            c.churn,
            secs
        );
        s += &format!(
            "  connected    {} in {:.1} s\n  published    {} ({:.0}/s)\n  deliveries   {} received, {} required: {} lost, {} duplicated, {} reordered; {} declared dropped by the server\n  reconnects   {}\n  errors       {}{}\n",
            o.connected,
            o.connect_took.as_secs_f64(),
            o.published,
            o.published as f64 / secs,
            o.pairs.received,
            o.pairs.expected,
            o.pairs.lost,
            o.pairs.duplicates,
            o.pairs.reordered,
            o.declared_drops,
            o.reconnects,
            o.errors,
            o.first_error
                .as_deref()
                .map_or(String::new(), |e| format!(" (first: {e})"))
        );
        s += &format!(
            "  server fds   {} before, {} connected, {} after the clients closed\n  server RSS   {} KiB before, {} KiB after, peak {} KiB; slope after {:.0} s warm-up: {fmt_slope} ({} samples)\n",
            o.fds_before,
            o.fds_connected,
            o.fds_after,
            o.rss_before_kib,
            o.rss_after_kib,
            o.rss_peak_kib,
            c.warmup.as_secs_f64(),
            o.rss_samples.len()
        );
        for f in self.failures() {
            s += &format!("  FAILED: {f}\n");
        }
        s
    }

    pub fn json(&self) -> String {
        let (c, o) = (self.cfg, self.out);
        let samples: Vec<String> = o
            .rss_samples
            .iter()
            .map(|(t, k)| format!("[{t:.1},{k}]"))
            .collect();
        let failures: Vec<String> = self.failures().iter().map(|f| json_str(f)).collect();
        format!(
            concat!(
                "{{\"scenario\":\"soak\",\"url\":{},\"connections\":{},\"publishers\":{},\"topics\":{},",
                "\"rate\":{},\"churn\":{},\"seconds\":{:.3},\"connected\":{},\"connect_s\":{:.3},",
                "\"published\":{},\"reconnects\":{},\"received\":{},\"expected\":{},\"lost\":{},",
                "\"duplicates\":{},\"reordered\":{},\"declared_drops\":{},\"errors\":{},\"pings\":{},",
                "\"fds_before\":{},\"fds_connected\":{},\"fds_after\":{},\"rss_before_kib\":{},",
                "\"rss_after_kib\":{},\"rss_peak_kib\":{},\"rss_slope_kib_per_min\":{},",
                "\"rss_samples\":[{}],\"failures\":[{}]}}"
            ),
            json_str(self.url),
            c.connections,
            c.publishers,
            c.topics,
            c.rate,
            c.churn,
            o.ran.as_secs_f64(),
            o.connected,
            o.connect_took.as_secs_f64(),
            o.published,
            o.reconnects,
            o.pairs.received,
            o.pairs.expected,
            o.pairs.lost,
            o.pairs.duplicates,
            o.pairs.reordered,
            o.declared_drops,
            o.errors,
            o.pings,
            o.fds_before,
            o.fds_connected,
            o.fds_after,
            o.rss_before_kib,
            o.rss_after_kib,
            o.rss_peak_kib,
            o.rss_slope
                .map_or("null".to_string(), |s| format!("{s:.1}")),
            samples.join(","),
            failures.join(",")
        )
    }
}
