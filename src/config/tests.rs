//! Flag parsing, defaults and the one-line refusals.

use super::*;

fn parse(args: &[&str]) -> Result<Config, String> {
    let mut argv = vec!["wsd"];
    argv.extend_from_slice(args);
    Config::try_parse_from(argv).map_err(|e| one_line(&e))
}

#[test]
fn flags_parse_and_defaults_match_default() {
    // Only flags here: the environment of a test process is not ours to control.
    let c = parse(&[
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--workers",
        "2",
        "--ws-path",
        "/x",
        "--max-payload",
        "16",
        "--io",
        "epoll",
        "--app",
        "echo",
        "--log-level",
        "debug",
    ])
    .expect("valid flags parse");
    assert_eq!(c.port, 0);
    assert_eq!(c.cluster_workers, Workers::Count(2));
    assert_eq!(c.ws_path, "/x");
    assert_eq!(c.max_payload, 16);
    assert_eq!(c.io, IoMode::Epoll);
    assert_eq!(c.log_level, LogLevel::Debug);
}

#[test]
fn operations_knobs_parse() {
    let c = parse(&[
        "--shutdown-timeout",
        "0",
        "--max-connections",
        "100",
        "--max-connections-per-ip",
        "3",
        "--upgrade-max-concurrent",
        "7",
        "--payload-limit-policy",
        "send",
        "--log-format",
        "json",
    ])
    .expect("valid flags parse");
    assert_eq!(c.shutdown_timeout, 0);
    assert_eq!(c.max_connections, MaxConnections::Count(100));
    assert_eq!(c.max_connections_per_ip, 3);
    assert_eq!(c.upgrade_max_concurrent, 7);
    assert_eq!(c.payload_limit_policy, PayloadLimitPolicy::Send);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(MaxConnections::Auto.resolve(20_000), 20_000 - FD_MARGIN);
    assert_eq!(MaxConnections::Auto.resolve(10), 1);
    assert_eq!(MaxConnections::Count(5).resolve(20_000), 5);
    assert_eq!(MaxQueuedBytes::Auto.resolve(Some(8 << 30)), Some(2 << 30));
    assert_eq!(MaxQueuedBytes::Auto.resolve(None), None);
    assert_eq!(MaxQueuedBytes::Off.resolve(Some(8 << 30)), None);
    assert_eq!(MaxQueuedBytes::Bytes(1 << 20).resolve(None), Some(1 << 20));
}

#[test]
fn secrets_never_print() {
    let c = parse(&["--publish-key", "hunter2"]).expect("valid key");
    assert_eq!(
        c.publish_key.as_ref().map(Secret::expose),
        Some(&b"hunter2"[..])
    );
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn bad_values_name_the_variable() {
    for (args, env) in [
        (&["--port", "70000"][..], "PORT"),
        (&["--port=-1"][..], "PORT"),
        (&["--port", "abc"][..], "PORT"),
        (&["--admin-port", "70000"][..], "ADMIN_PORT"),
        (&["--admin-port", "admin"][..], "ADMIN_PORT"),
        (&["--workers", "0"][..], "CLUSTER_WORKERS"),
        (&["--workers=-3"][..], "CLUSTER_WORKERS"),
        (&["--max-payload", "0"][..], "MAX_PAYLOAD"),
        (&["--max-payload=-5"][..], "MAX_PAYLOAD"),
        (&["--ws-path", "ws"][..], "WS_PATH"),
        (&["--host", "nowhere"][..], "HOST"),
        (&["--io", "kqueue"][..], "WSD_IO"),
        (&["--app", "nope"][..], "WSD_APP"),
        (&["--log-level", "loud"][..], "LOG_LEVEL"),
        (&["--max-subscriptions", "0"][..], "MAX_SUBSCRIPTIONS"),
        (&["--max-backpressure", "10"][..], "MAX_BACKPRESSURE"),
        (
            &["--backpressure-policy", "ignore"][..],
            "BACKPRESSURE_POLICY",
        ),
        (&["--publish-key", "two words"][..], "PUBLISH_KEY"),
        (&["--idle-timeout", "soon"][..], "IDLE_TIMEOUT"),
        (&["--idle-timeout=-1"][..], "IDLE_TIMEOUT"),
        (&["--send-pings", "maybe"][..], "SEND_PINGS"),
        (&["--shutdown-timeout", "3601"][..], "SHUTDOWN_TIMEOUT"),
        (&["--write-delay-ms", "1001"][..], "WRITE_DELAY_MS"),
        (&["--compression", "zlib"][..], "COMPRESSION"),
        (&["--compression-min-size=-1"][..], "COMPRESSION_MIN_SIZE"),
        (
            &["--compression-min-size", "big"][..],
            "COMPRESSION_MIN_SIZE",
        ),
        (&["--write-delay-ms", "soon"][..], "WRITE_DELAY_MS"),
        (&["--send-buffer", "100"][..], "SEND_BUFFER"),
        (&["--max-queued-bytes", "1000"][..], "MAX_QUEUED_BYTES"),
        (&["--max-queued-bytes", "lots"][..], "MAX_QUEUED_BYTES"),
        (&["--send-buffer", "big"][..], "SEND_BUFFER"),
        (&["--shutdown-timeout", "soon"][..], "SHUTDOWN_TIMEOUT"),
        (&["--max-connections", "0"][..], "MAX_CONNECTIONS"),
        (&["--max-connections", "lots"][..], "MAX_CONNECTIONS"),
        (
            &["--max-connections-per-ip=-1"][..],
            "MAX_CONNECTIONS_PER_IP",
        ),
        (
            &["--upgrade-max-concurrent", "0"][..],
            "UPGRADE_MAX_CONCURRENT",
        ),
        (
            &["--upgrade-max-concurrent-per-ip=-1"][..],
            "UPGRADE_MAX_CONCURRENT_PER_IP",
        ),
        (
            &["--payload-limit-policy", "truncate"][..],
            "PAYLOAD_LIMIT_POLICY",
        ),
        (&["--metrics-key", "a b"][..], "METRICS_KEY"),
        (&["--redis-url", "http://cache:6379"][..], "REDIS_URL"),
        (&["--redis-url", "redis://u:pw@[nope"][..], "REDIS_URL"),
        (&["--redis-prefix", ""][..], "REDIS_PREFIX"),
        (&["--redis-prefix", "a b"][..], "REDIS_PREFIX"),
        (&["--redis-sharded", "sometimes"][..], "REDIS_SHARDED"),
        (&["--log-format", "xml"][..], "LOG_FORMAT"),
    ] {
        let err = parse(args).expect_err("bad value must be refused");
        assert!(err.contains(env), "{args:?}: {err}");
        assert!(!err.contains("pw@"), "a password is never echoed: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn admin_port_must_differ_from_port() {
    let load = |args: &[&str]| {
        let mut argv: Vec<std::ffi::OsString> = vec!["wsd".into()];
        argv.extend(args.iter().map(Into::into));
        Config::load(argv)
    };
    let err = load(&["--port", "9000", "--admin-port", "9000"])
        .expect_err("the same port twice")
        .to_string();
    assert!(err.contains("ADMIN_PORT") && err.contains("PORT"), "{err}");
    let ok = load(&["--port", "9000", "--admin-port", "9091"]).expect("distinct ports");
    assert_eq!(ok.config.admin_port, Some(9091));
    let zero = load(&["--port", "0", "--admin-port", "0"]).expect("both picked by the kernel");
    assert_eq!(zero.config.admin_port, Some(0));
}
