//! `GET /metrics`: every worker's counters in the Prometheus text format (OpenMetrics 1.0, as
//! encoded by the `prometheus-client` crate), labelled by `worker`.
//!
//! Nothing is registered or measured ahead of time: the workers only bump their relaxed atomics
//! in [`WorkerStats`], and a scrape builds a registry around an [`Exporter`] that reads them while
//! the response is encoded. A scrape costs the hot path nothing.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::stats::{
    AUTH_FAILURES, CLOSE_CODES, DENIED_OPS, HANDSHAKE_STATUSES, POLICY_CLOSES, RATE_SCOPES,
    REFRESHES, RedisStats, RejectReason, WorkerStats,
};
use crate::io::Backend;

/// The `Content-Type` of a `/metrics` answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric family `/metrics` exports (without the `_total` suffix counters carry on their
/// samples), in the order they appear.
pub const FAMILIES: [&str; 29] = [
    "wsd_build",
    "wsd_connections",
    "wsd_connections_accepted",
    "wsd_connections_rejected",
    "wsd_handshake_failures",
    "wsd_messages_received",
    "wsd_messages_sent",
    "wsd_received_bytes",
    "wsd_sent_bytes",
    "wsd_closes",
    "wsd_idle_closes",
    "wsd_oversized_discarded",
    "wsd_queued_bytes",
    "wsd_loop_turns",
    "wsd_uring_recv_enobufs",
    "wsd_uring_cq_overflows",
    "wsd_topics",
    "wsd_subscriptions",
    "wsd_published",
    "wsd_delivered",
    "wsd_dropped_messages",
    "wsd_backpressure_closes",
    "wsd_queued_bound_applied",
    "wsd_auth_failures",
    "wsd_permission_denied",
    "wsd_rate_limited",
    "wsd_policy_closes",
    "wsd_auth_refreshes",
    "wsd_publish_delay_seconds",
];

pub use super::classic::{CLASSIC_CONTENT_TYPE, Format};
pub use super::process::PROCESS_FAMILIES;

/// What an exposition reads: the running server's backend and its workers' counters (the
/// server's shared state implements it; a test can stand in for it).
pub trait Source: fmt::Debug + Send + Sync + 'static {
    /// The I/O backend in use.
    fn backend(&self) -> Backend;
    /// One entry per worker, indexed by worker id.
    fn workers(&self) -> &[WorkerStats];
    /// The Redis link's counters, when `REDIS_URL` is set.
    fn redis(&self) -> Option<&RedisStats> {
        None
    }
}

/// The exposition text for the counters of `source` in OpenMetrics, ending with `# EOF`.
pub fn render<S: Source>(source: &Arc<S>) -> String {
    render_for(source, Scrape::default())
}

/// How one scrape is answered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scrape {
    /// The format asked for.
    pub format: Format,
    /// The worker whose connection asks, when it is one the `wsd_connections` gauge counts: the
    /// gauge leaves the scrape's own connection out.
    pub worker: Option<usize>,
}

/// The exposition text for the counters of `source` as `scrape` asks: every `wsd_*` family,
/// the Redis ones with `REDIS_URL`, then the standard `process_*` ones read from `/proc` now.
pub fn render_for<S: Source>(source: &Arc<S>, scrape: Scrape) -> String {
    let workers = source.workers().len();
    let mut registry = Registry::with_prefix("wsd");
    registry.register_collector(Box::new(Exporter {
        source: source.clone(),
        scraper: scrape.worker,
    }));
    let mut process = Registry::default();
    process.register_collector(Box::new(super::process::Collect));
    let mut text = String::with_capacity(6144 + 3072 * workers);
    // Writing to a String cannot fail; an encoder error would only cut the answer short.
    let _ = prometheus_client::encoding::text::encode_registry(&mut text, &registry);
    let _ = prometheus_client::encoding::text::encode(&mut text, &process);
    match scrape.format {
        Format::OpenMetrics => text,
        Format::Classic => super::classic::from_openmetrics(&text),
    }
}

/// Reads the workers' counters while a scrape is encoded.
#[derive(Debug)]
pub struct Exporter {
    /// The counters.
    pub source: Arc<dyn Source>,
    /// The worker of the scrape's own connection, left out of `wsd_connections`.
    pub scraper: Option<usize>,
}

/// Whether a family is a counter or a gauge.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// A family with one sample per worker.
struct PerWorker {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    read: fn(&WorkerStats) -> u64,
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn load_usize(gauge: &AtomicUsize) -> u64 {
    gauge.load(Ordering::Relaxed) as u64
}

/// The families with a `worker` label only, up to `wsd_closes`.
const TRAFFIC: [PerWorker; 6] = [
    PerWorker {
        name: "connections",
        help: "Connections open now (WebSocket and plain HTTP), the scrape's own left out.",
        kind: Kind::Gauge,
        read: |w| load_usize(&w.connections),
    },
    PerWorker {
        name: "connections_accepted",
        help: "Connections accepted.",
        kind: Kind::Counter,
        read: |w| load_usize(&w.accepted),
    },
    // wsd_connections_rejected and wsd_handshake_failures come here (labelled).
    PerWorker {
        name: "messages_received",
        help: "WebSocket data messages received (text and binary, after reassembly).",
        kind: Kind::Counter,
        read: |w| load(&w.messages_in),
    },
    PerWorker {
        name: "messages_sent",
        help: "WebSocket data messages queued for sending (replies and deliveries).",
        kind: Kind::Counter,
        read: |w| load(&w.messages_out),
    },
    PerWorker {
        name: "received_bytes",
        help: "Bytes received from peers (wire bytes: HTTP requests and all frames).",
        kind: Kind::Counter,
        read: |w| load(&w.bytes_in),
    },
    PerWorker {
        name: "sent_bytes",
        help: "Bytes handed to the kernel for peers (wire bytes).",
        kind: Kind::Counter,
        read: |w| load(&w.bytes_out),
    },
];

/// The families after `wsd_closes`, up to the pub/sub ones.
const LOOP: [PerWorker; 12] = [
    PerWorker {
        name: "idle_closes",
        help: "Connections closed with 1001 after IDLE_TIMEOUT of silence.",
        kind: Kind::Counter,
        read: |w| load(&w.idle_closes),
    },
    PerWorker {
        name: "oversized_discarded",
        help: "Messages over MAX_PAYLOAD discarded under PAYLOAD_LIMIT_POLICY=send.",
        kind: Kind::Counter,
        read: |w| load(&w.oversized_discarded),
    },
    PerWorker {
        name: "queued_bytes",
        help: "Bytes queued for peers and not yet sent, as of the worker's last loop turn.",
        kind: Kind::Gauge,
        read: |w| load(&w.queued_bytes),
    },
    PerWorker {
        name: "loop_turns",
        help: "Event-loop turns.",
        kind: Kind::Counter,
        read: |w| load(&w.loop_turns),
    },
    PerWorker {
        name: "uring_recv_enobufs",
        help: "io_uring receives re-armed after the provided-buffer ring ran dry.",
        kind: Kind::Counter,
        read: |w| load(&w.recv_enobufs),
    },
    PerWorker {
        name: "uring_cq_overflows",
        help: "io_uring completion-queue overflows recovered from.",
        kind: Kind::Counter,
        read: |w| load(&w.cq_overflows),
    },
    PerWorker {
        name: "topics",
        help: "Pub/sub topics with at least one subscriber on the worker.",
        kind: Kind::Gauge,
        read: |w| load_usize(&w.topics),
    },
    PerWorker {
        name: "subscriptions",
        help: "Pub/sub subscriptions held by the worker's connections.",
        kind: Kind::Gauge,
        read: |w| load_usize(&w.subscriptions),
    },
    PerWorker {
        name: "published",
        help: "Pub/sub messages published on the worker (WebSocket PUBLISH and POST /publish).",
        kind: Kind::Counter,
        read: |w| load(&w.published),
    },
    PerWorker {
        name: "delivered",
        help: "Pub/sub messages queued to the worker's subscribers.",
        kind: Kind::Counter,
        read: |w| load(&w.delivered),
    },
    // wsd_dropped_messages comes here (labelled by reason).
    PerWorker {
        name: "backpressure_closes",
        help: "Connections closed with 1013 under BACKPRESSURE_POLICY=close.",
        kind: Kind::Counter,
        read: |w| load(&w.closed_backpressure),
    },
    PerWorker {
        name: "queued_bound_applied",
        help: "Drops and 1013 closes (BACKPRESSURE_POLICY) because the worker was over its share of MAX_QUEUED_BYTES.",
        kind: Kind::Counter,
        read: |w| load(&w.over_queued_bound),
    },
];

impl Exporter {
    fn per_worker(&self, encoder: &mut DescriptorEncoder<'_>, m: &PerWorker) -> fmt::Result {
        let metric_type = match m.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
        };
        let mut family = encoder.encode_descriptor(m.name, m.help, None, metric_type)?;
        for (id, w) in self.source.workers().iter().enumerate() {
            let labels = [("worker", id.to_string())];
            let sample = family.encode_family(&labels)?;
            let mut value = (m.read)(w);
            if m.name == "connections" && self.scraper == Some(id) {
                value = value.saturating_sub(1); // the scrape's own connection
            }
            match m.kind {
                Kind::Counter => ConstCounter::new(value).encode(sample)?,
                Kind::Gauge => ConstGauge::new(to_i64(value)).encode(sample)?,
            }
        }
        Ok(())
    }

    /// A counter family labelled by `worker` and `key`: one sample per worker and label value,
    /// `read(worker, i)` giving the count for `values[i]`.
    fn labelled(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        key: &'static str,
        values: &[String],
        read: fn(&WorkerStats, usize) -> u64,
    ) -> fmt::Result {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (id, w) in self.source.workers().iter().enumerate() {
            for (i, value) in values.iter().enumerate() {
                let labels = [("worker", id.to_string()), (key, value.clone())];
                ConstCounter::new(read(w, i)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Label values for counters indexed like `slots`, whose last slot counts everything else.
fn slot_labels(slots: &[u16]) -> Vec<String> {
    let last = slots.len().saturating_sub(1);
    (0..slots.len())
        .map(|i| {
            if i == last {
                "other".to_owned()
            } else {
                slots[i].to_string()
            }
        })
        .collect()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for Exporter {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let info = Info::new([
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("io", self.source.backend().to_string()),
        ]);
        let sample = encoder.encode_descriptor(
            "build",
            "The running wsd: version and I/O backend (always 1).",
            None,
            info.metric_type(),
        )?;
        info.encode(sample)?;
        for m in &TRAFFIC[..2] {
            self.per_worker(&mut encoder, m)?;
        }
        let reasons: Vec<String> = RejectReason::ALL
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect();
        self.labelled(
            &mut encoder,
            "connections_rejected",
            "Connections refused with 503 before any state was allocated, by limit.",
            "reason",
            &reasons,
            |w, i| load(&w.rejected[i]),
        )?;
        self.labelled(
            &mut encoder,
            "handshake_failures",
            "Upgrades and plain requests answered with an error status (408: handshake timed out).",
            "status",
            &slot_labels(&HANDSHAKE_STATUSES),
            |w, i| load(&w.handshake_failures[i]),
        )?;
        for m in &TRAFFIC[2..6] {
            self.per_worker(&mut encoder, m)?;
        }
        self.labelled(
            &mut encoder,
            "closes",
            "WebSocket connections closed, by the first close code sent or received \
             (1005: peer close without code; 1006: ended without a close frame).",
            "code",
            &slot_labels(&CLOSE_CODES),
            |w, i| load(&w.closes[i]),
        )?;
        for m in &LOOP[..10] {
            self.per_worker(&mut encoder, m)?;
        }
        self.labelled(
            &mut encoder,
            "dropped_messages",
            "Pub/sub messages dropped for subscribers over MAX_BACKPRESSURE, by which one went.",
            "reason",
            &["drop-newest".to_owned(), "drop-oldest".to_owned()],
            |w, i| match i {
                0 => load(&w.dropped_newest),
                _ => load(&w.dropped_oldest),
            },
        )?;
        for m in &LOOP[10..] {
            self.per_worker(&mut encoder, m)?;
        }
        self.access(&mut encoder)?;
        self.publish_delay(&mut encoder)?;
        if let Some(redis) = self.source.redis() {
            encode_redis(&mut encoder, redis)?;
        }
        Ok(())
    }
}

impl Exporter {
    /// `wsd_publish_delay_seconds`, one histogram per worker (`metrics/delay.rs`).
    fn publish_delay(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let mut family = encoder.encode_descriptor(
            "publish_delay_seconds",
            "Per loop turn that delivered published messages: seconds from the start of the \
             turn's work to its sends queued (one observation per turn, not per message).",
            None,
            MetricType::Histogram,
        )?;
        for (id, w) in self.source.workers().iter().enumerate() {
            let labels = [("worker", id.to_string())];
            let (sum, count, buckets) = w.publish_delay.snapshot();
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        Ok(())
    }

    /// The access-control families.
    fn access(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let labels = |l: &[&str]| -> Vec<String> { l.iter().map(|s| (*s).to_owned()).collect() };
        self.labelled(
            encoder,
            "auth_failures",
            "Upgrades refused by access control: 401 for a missing, invalid or expired token, \
             403 for a foreign Origin, 429 for UPGRADE_RATE_PER_IP.",
            "reason",
            &labels(&AUTH_FAILURES),
            |w, i| load(&w.auth_failures[i]),
        )?;
        self.labelled(
            encoder,
            "permission_denied",
            "Requests refused with PERMISSION_DENIED (outside the connection's rights, or an AUTH \
             refresh for another identity).",
            "op",
            &labels(&DENIED_OPS),
            |w, i| load(&w.permission_denied[i]),
        )?;
        self.labelled(
            encoder,
            "rate_limited",
            "Messages refused with RESOURCE_EXHAUSTED by a rate limit, by the limit hit.",
            "scope",
            &labels(&RATE_SCOPES),
            |w, i| load(&w.rate_limited[i]),
        )?;
        self.labelled(
            encoder,
            "policy_closes",
            "Connections closed with 1008: RATE_LIMIT_STRIKES refusals in a row, or a token that \
             expired without a refresh.",
            "reason",
            &labels(&POLICY_CLOSES),
            |w, i| load(&w.policy_closes[i]),
        )?;
        self.labelled(
            encoder,
            "auth_refreshes",
            "AUTH messages: token replaced, or refused (invalid, expired or another identity).",
            "result",
            &labels(&REFRESHES),
            |w, i| load(&w.auth_refreshes[i]),
        )
    }
}

/// The Redis link's families (only with `REDIS_URL`), in the order they appear.
pub const REDIS_FAMILIES: [&str; 8] = [
    "wsd_redis_up",
    "wsd_redis_channels",
    "wsd_redis_published",
    "wsd_redis_received",
    "wsd_redis_undeliverable",
    "wsd_redis_invalid",
    "wsd_redis_probe_failures",
    "wsd_redis_reconnects",
];

fn encode_redis(encoder: &mut DescriptorEncoder<'_>, r: &RedisStats) -> fmt::Result {
    let gauges = [
        (
            "redis_up",
            "1 while the Redis link is connected, subscribed and its probe comes back; else 0.",
            u64::from(r.up.load(Ordering::Relaxed)),
        ),
        (
            "redis_channels",
            "Topic channels subscribed on Redis now (topics with local subscribers).",
            load(&r.channels),
        ),
    ];
    for (name, help, value) in gauges {
        let sample = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(to_i64(value)).encode(sample)?;
    }
    let counters = [
        (
            "redis_published",
            "Publications sent to Redis for the other instances.",
            &r.published,
        ),
        (
            "redis_received",
            "Publications from other instances received from Redis and handed to workers.",
            &r.received,
        ),
        (
            "redis_undeliverable",
            "Publications that could not be sent to Redis (link down or the send failed): \
             local subscribers got them, other instances did not.",
            &r.undeliverable,
        ),
        (
            "redis_invalid",
            "Payloads from Redis refused by the envelope check (not a wsd frame).",
            &r.invalid,
        ),
        (
            "redis_probe_failures",
            "Self-publish probes not delivered back in time (connected but not delivering); each \
             reconnects.",
            &r.probe_failures,
        ),
        (
            "redis_reconnects",
            "Redis connections lost or refused, each followed by a reconnect after a backoff.",
            &r.reconnects,
        ),
    ];
    for (name, help, counter) in counters {
        let sample = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(load(counter)).encode(sample)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the server's shared state.
    #[derive(Debug)]
    struct Fake(Vec<WorkerStats>);

    impl Source for Fake {
        fn backend(&self) -> Backend {
            Backend::Epoll
        }
        fn workers(&self) -> &[WorkerStats] {
            &self.0
        }
    }

    fn shared(workers: usize) -> Arc<Fake> {
        Arc::new(Fake((0..workers).map(|_| WorkerStats::default()).collect()))
    }

    /// A server with `REDIS_URL` set.
    #[derive(Debug)]
    struct WithRedis(Vec<WorkerStats>, RedisStats);

    impl Source for WithRedis {
        fn backend(&self) -> Backend {
            Backend::Uring
        }
        fn workers(&self) -> &[WorkerStats] {
            &self.0
        }
        fn redis(&self) -> Option<&RedisStats> {
            Some(&self.1)
        }
    }

    #[test]
    fn redis_families_follow_the_others_only_when_configured() {
        let s = Arc::new(WithRedis(
            vec![WorkerStats::default()],
            RedisStats::default(),
        ));
        s.1.up.store(true, Ordering::Relaxed);
        s.1.undeliverable.store(5, Ordering::Relaxed);
        s.1.probe_failures.store(2, Ordering::Relaxed);
        let text = render(&s);
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let expected: Vec<&str> = FAMILIES
            .iter()
            .chain(REDIS_FAMILIES.iter())
            .chain(PROCESS_FAMILIES.iter())
            .copied()
            .collect();
        assert_eq!(types, expected, "{text}");
        assert_eq!(sample(&text, "wsd_redis_up"), Some(1));
        assert_eq!(sample(&text, "wsd_redis_undeliverable_total"), Some(5));
        assert_eq!(sample(&text, "wsd_redis_probe_failures_total"), Some(2));
        assert!(
            !render(&shared(1)).contains("redis"),
            "nothing without REDIS_URL"
        );
    }

    /// The value of the sample `name{labels}` (labels as written, in order).
    fn sample(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_family_has_help_and_type_once_in_order() {
        let text = render(&shared(2));
        assert!(text.ends_with("# EOF\n"), "{text}");
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let all: Vec<&str> = FAMILIES.iter().chain(&PROCESS_FAMILIES).copied().collect();
        assert_eq!(types, all, "{text}");
        for name in &all {
            assert_eq!(
                text.matches(&format!("# HELP {name} ")).count(),
                1,
                "{name}: {text}"
            );
        }
        // Every sample line is `name{labels} number` with a known family name; every `wsd_`
        // value but the histogram's sum is an integer.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            let name = series.split('{').next().unwrap_or_default();
            let family = ["_total", "_info", "_sum", "_count", "_bucket"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|f| all.contains(f))
                .unwrap_or(name);
            assert!(all.contains(&family), "{line}");
            let number: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            if family.starts_with("wsd_") && !name.ends_with("_sum") {
                assert!(value.parse::<u64>().is_ok(), "{line}");
            }
            assert!(number >= 0.0, "{line}");
        }
    }

    #[test]
    fn a_scrape_leaves_its_own_connection_out_and_classic_is_0_0_4() {
        let s = shared(2);
        s.0[0].connections.store(3, Ordering::Relaxed);
        s.0[1].connections.store(1, Ordering::Relaxed);
        let mine = render_for(
            &s,
            Scrape {
                format: Format::OpenMetrics,
                worker: Some(1),
            },
        );
        assert_eq!(sample(&mine, r#"wsd_connections{worker="0"}"#), Some(3));
        assert_eq!(sample(&mine, r#"wsd_connections{worker="1"}"#), Some(0));
        let classic = render_for(
            &s,
            Scrape {
                format: Format::Classic,
                worker: None,
            },
        );
        assert_eq!(sample(&classic, r#"wsd_connections{worker="1"}"#), Some(1));
        assert!(!classic.contains("# EOF"), "{classic}");
        assert!(
            classic.contains("# TYPE wsd_closes_total counter\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE wsd_build_info gauge\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE wsd_publish_delay_seconds histogram\n"),
            "{classic}"
        );
    }

    #[test]
    fn values_come_from_the_atomics_per_worker() {
        let s = shared(2);
        s.0[1].accepted.store(7, Ordering::Relaxed);
        s.0[0].count_close(1000);
        s.0[0].count_close(4321);
        s.0[1].count_handshake_failure(426);
        s.0[1].count_rejected(RejectReason::PerIp);
        s.0[0].queued_bytes.store(99, Ordering::Relaxed);
        s.0[1].dropped_oldest.store(3, Ordering::Relaxed);
        let text = render(&s);
        let v = |series| sample(&text, series);
        assert_eq!(v(r#"wsd_connections_accepted_total{worker="1"}"#), Some(7));
        assert_eq!(v(r#"wsd_connections_accepted_total{worker="0"}"#), Some(0));
        assert_eq!(v(r#"wsd_closes_total{worker="0",code="1000"}"#), Some(1));
        assert_eq!(v(r#"wsd_closes_total{worker="0",code="other"}"#), Some(1));
        assert_eq!(v(r#"wsd_closes_total{worker="1",code="1000"}"#), Some(0));
        assert_eq!(
            v(r#"wsd_handshake_failures_total{worker="1",status="426"}"#),
            Some(1)
        );
        assert_eq!(
            v(r#"wsd_connections_rejected_total{worker="1",reason="max_connections_per_ip"}"#),
            Some(1)
        );
        assert_eq!(v(r#"wsd_queued_bytes{worker="0"}"#), Some(99));
        assert_eq!(
            v(r#"wsd_dropped_messages_total{worker="1",reason="drop-oldest"}"#),
            Some(3)
        );
        assert!(text.contains(r#"wsd_build_info{version=""#), "{text}");
    }
}
