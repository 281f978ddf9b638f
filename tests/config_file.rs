//! The configuration file (`--config`, `WSD_CONFIG`) and `--print-config`, through the real
//! binary: values applied, precedence (flags > environment > file > defaults), every refusal as
//! one line naming the file and the key, the round trip of `--print-config`, the sample file.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{KNOB_VARS, wsd_command};

/// Every knob's variable, from the binary's own `--print-config` keys (so a new knob is covered
/// by the tests that iterate over it without editing them).
fn knob_keys() -> Vec<String> {
    let (status, out, err) = run(wsd_command().arg("--print-config"));
    assert!(status.success(), "--print-config: {err}");
    out.lines()
        .map(|l| l.trim_start_matches("# "))
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.to_owned()))
        .filter(|k| !k.contains(' '))
        .collect()
}

/// Runs wsd to completion (killed after 10 s) and returns status, stdout and stderr.
fn run(cmd: &mut Command) -> (ExitStatus, String, String) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn wsd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("try_wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if child.try_wait().expect("try_wait").is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory for this test's files.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wsd-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create test dir");
    d
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).expect("write config file");
    path.to_owned()
}

/// `--print-config` output parsed as TOML.
fn printed(cmd: &mut Command) -> toml::Table {
    let (status, out, err) = run(cmd.arg("--print-config"));
    assert!(status.success(), "--print-config exit {status:?}: {err}");
    assert!(err.is_empty(), "--print-config stderr: {err}");
    out.parse()
        .unwrap_or_else(|e| panic!("--print-config is not TOML ({e}):\n{out}"))
}

fn int(t: &toml::Table, key: &str) -> i64 {
    t.get(key)
        .and_then(toml::Value::as_integer)
        .unwrap_or_else(|| panic!("{key} in {t:?}"))
}

/// Runs wsd and expects exit 2 with exactly one stderr line containing every `needle`.
fn refused(cmd: &mut Command, needles: &[&str], ctx: &str) -> String {
    let (status, out, err) = run(cmd);
    assert_eq!(status.code(), Some(2), "{ctx}: exit status; stderr {err:?}");
    assert!(out.is_empty(), "{ctx}: stdout {out:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{ctx}: one line: {err:?}");
    assert!(lines[0].starts_with("wsd: "), "{ctx}: {err:?}");
    for n in needles {
        assert!(
            lines[0].contains(n),
            "{ctx}: stderr should name {n:?}: {err:?}"
        );
    }
    lines[0].to_owned()
}

#[test]
fn file_values_apply_and_the_environment_and_flags_override_them() {
    let d = dir("precedence");
    let file = write(
        &d.join("wsd.toml"),
        "port = 4000\nmax_payload = \"2048\"\nsend_pings = false\ncluster_workers = 3\n\
         log_level = \"debug\"\nbackpressure_policy = \"close\"\n",
    );
    let t = printed(wsd_command().arg("--config").arg(&file));
    assert_eq!(int(&t, "port"), 4000);
    assert_eq!(int(&t, "max_payload"), 2048);
    assert_eq!(int(&t, "cluster_workers"), 3);
    assert_eq!(t.get("send_pings"), Some(&toml::Value::Boolean(false)));
    assert_eq!(t["log_level"].as_str(), Some("debug"));
    assert_eq!(t["backpressure_policy"].as_str(), Some("close"));
    // Untouched knobs keep their defaults.
    assert_eq!(int(&t, "idle_timeout"), 120);

    // WSD_CONFIG names the file too; the environment overrides it.
    let t = printed(
        wsd_command()
            .env("WSD_CONFIG", &file)
            .env("PORT", "5000")
            .env("SEND_PINGS", "true"),
    );
    assert_eq!(int(&t, "port"), 5000);
    assert_eq!(t.get("send_pings"), Some(&toml::Value::Boolean(true)));
    assert_eq!(int(&t, "max_payload"), 2048, "file value kept");

    // A flag overrides the environment, and --config overrides WSD_CONFIG.
    let other = write(&d.join("other.toml"), "max_payload = 100\n");
    let t = printed(
        wsd_command()
            .env("WSD_CONFIG", &file)
            .env("PORT", "5000")
            .args(["--port", "6000", "--config"])
            .arg(&other),
    );
    assert_eq!(int(&t, "port"), 6000);
    assert_eq!(int(&t, "max_payload"), 100);
    assert_eq!(
        t["cluster_workers"].as_str(),
        Some("auto"),
        "--config replaces WSD_CONFIG's file entirely: {t:?}"
    );
}

#[test]
fn unknown_keys_are_refused_naming_key_and_file() {
    let d = dir("unknown");
    for (text, key) in [
        ("prot = 3000\n", "prot"),
        ("PORT = 3000\n", "PORT"),
        ("wsd_config = \"x.toml\"\n", "wsd_config"),
        ("[server]\nport = 1\n", "server"),
    ] {
        let file = write(&d.join("wsd.toml"), text);
        let line = refused(
            wsd_command().arg("--config").arg(&file),
            &[&file.display().to_string(), &format!("unknown key '{key}'")],
            text,
        );
        assert_eq!(
            line,
            format!("wsd: {}: unknown key '{key}'", file.display())
        );
    }
}

#[test]
fn a_bad_value_of_each_knob_is_refused_naming_key_and_file() {
    let bad: &[(&str, &str)] = &[
        ("port", "70000"),
        ("host", "\"nowhere\""),
        ("cluster_workers", "0"),
        ("ws_path", "\"ws\""),
        ("max_payload", "0"),
        ("wsd_io", "\"kqueue\""),
        ("wsd_app", "\"nope\""),
        ("log_level", "\"loud\""),
        ("idle_timeout", "-1"),
        ("send_pings", "\"maybe\""),
        ("max_subscriptions", "0"),
        ("max_backpressure", "10"),
        ("backpressure_policy", "\"ignore\""),
        ("write_delay_ms", "1001"),
        ("send_buffer", "100"),
        ("max_queued_bytes", "1000"),
        ("publish_key", "\"two words\""),
        ("shutdown_timeout", "3601"),
        ("max_connections", "\"lots\""),
        ("max_connections_per_ip", "-1"),
        ("upgrade_max_concurrent", "0"),
        ("upgrade_max_concurrent_per_ip", "-1"),
        ("payload_limit_policy", "\"truncate\""),
        ("compression", "\"gzip\""),
        ("compression_min_size", "-5"),
        ("metrics_key", "\"\""),
        ("admin_port", "70000"),
        ("redis_url", "\"https://app:pa55word@cache\""),
        ("redis_prefix", "\"a b\""),
        ("redis_sharded", "\"maybe\""),
        ("log_format", "\"xml\""),
        ("wsd_relay_wake", "\"signal\""),
        ("ssl_cert", "\"\""),
        ("ssl_key", "\"\""),
        ("ssl_client_ca", "\"\""),
        ("jwt_secret", "\"two words\""),
        ("jwt_public_key", "\"/nonexistent/key.pem\""),
        ("jwt_audience", "\"\""),
        ("jwt_issuer", "\"\""),
        ("jwt_leeway", "-1"),
        ("auth_required", "\"maybe\""),
        ("anon_subscribe", "\"a:>:b\""),
        ("anon_publish", "\"x*\""),
        ("default_subscribe", "\"{user}\""),
        ("default_publish", "\">:a\""),
        ("allowed_origins", "\"example.com\""),
        ("rate_limit", "\"10\""),
        ("rate_limit_cost", "\"FOO:1\""),
        ("rate_limit_strikes", "-1"),
        ("rate_limit_identity", "\"0/1\""),
        ("upgrade_rate_per_ip", "\"fast\""),
    ];
    let keys = knob_keys();
    let covered: Vec<String> = bad.iter().map(|(k, _)| (*k).to_owned()).collect();
    assert_eq!(
        covered, keys,
        "one bad value per knob, in --print-config order"
    );
    let vars: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
    assert_eq!(
        vars,
        KNOB_VARS[..KNOB_VARS.len() - 1],
        "KNOB_VARS is complete"
    );

    let d = dir("bad");
    for (key, value) in bad {
        let file = write(&d.join("wsd.toml"), &format!("{key} = {value}\n"));
        let name = file.display().to_string();
        let line = refused(
            wsd_command().arg("--config").arg(&file),
            &[&name, &format!("invalid {key}")],
            &format!("{key} = {value}"),
        );
        if key.ends_with("_key") || key.ends_with("_secret") || *key == "redis_url" {
            assert!(
                !line.contains("two words") && !line.contains("pa55word"),
                "a secret is not echoed: {line}"
            );
        }
    }
    // The wrong TOML type for a knob, and a float where a whole number is due.
    for (text, needle) in [
        (
            "port = [3000]\n",
            "invalid port: must be a number, a string or a boolean",
        ),
        (
            "port = 3000.5\n",
            "invalid port '3000.5': must be a number from 0 to 65535",
        ),
        (
            "send_pings = 2\n",
            "invalid send_pings '2': must be true or false",
        ),
    ] {
        let file = write(&d.join("wsd.toml"), text);
        refused(wsd_command().arg("--config").arg(&file), &[needle], text);
    }
    // The documented example, word for word.
    let file = write(&d.join("wsd.toml"), "max_payload = 0\n");
    let line = refused(wsd_command().arg("--config").arg(&file), &[], "example");
    assert_eq!(
        line,
        format!(
            "wsd: {}: invalid max_payload '0': must be a number of bytes from 1 to 1073741824",
            file.display()
        )
    );
}

#[test]
fn numbers_strings_and_booleans_are_accepted_where_they_make_sense() {
    let d = dir("types");
    let file = write(
        &d.join("wsd.toml"),
        "port = \"3001\"\nidle_timeout = \"0\"\nsend_pings = \"off\"\nmax_connections = 50\n\
         cluster_workers = \"2\"\n",
    );
    let t = printed(wsd_command().arg("--config").arg(&file));
    assert_eq!(int(&t, "port"), 3001);
    assert_eq!(int(&t, "idle_timeout"), 0);
    assert_eq!(int(&t, "max_connections"), 50);
    assert_eq!(int(&t, "cluster_workers"), 2);
    assert_eq!(t.get("send_pings"), Some(&toml::Value::Boolean(false)));
}

#[test]
fn missing_unreadable_and_invalid_files_are_refused_with_one_line() {
    let d = dir("broken");
    let missing = d.join("nope.toml");
    refused(
        wsd_command().arg("--config").arg(&missing),
        &[&missing.display().to_string(), "cannot read"],
        "missing",
    );
    refused(
        wsd_command().env("WSD_CONFIG", &missing),
        &[&missing.display().to_string(), "cannot read"],
        "missing via WSD_CONFIG",
    );
    // A directory cannot be read as a file (and a mode-000 file can, by root).
    refused(
        wsd_command().arg("--config").arg(&d),
        &[&d.display().to_string(), "cannot read"],
        "directory",
    );
    let bad = write(
        &d.join("bad.toml"),
        "port = 3000\nhost = \"0.0.0.0\nws_path = 1\n",
    );
    refused(
        wsd_command().arg(format!("--config={}", bad.display())),
        &[&bad.display().to_string(), "invalid TOML at line 2"],
        "invalid TOML",
    );
    let dup = write(&d.join("dup.toml"), "port = 1\nport = 2\n");
    refused(
        wsd_command().arg("--config").arg(&dup),
        &[&dup.display().to_string(), "invalid TOML"],
        "duplicate key",
    );
}

#[test]
fn print_config_round_trips_through_config() {
    let d = dir("roundtrip");
    let mut first = wsd_command();
    first
        .env("PORT", "4321")
        .env("WSD_APP", "echo")
        .args([
            "--workers",
            "2",
            "--ws-path",
            "/socket",
            "--send-pings",
            "false",
        ])
        .args(["--max-connections", "77", "--payload-limit-policy", "send"]);
    let (status, text, err) = run(first.arg("--print-config"));
    assert!(status.success(), "{err}");
    let file = write(&d.join("printed.toml"), &text);
    let (status, again, err) = run(wsd_command()
        .arg("--config")
        .arg(&file)
        .arg("--print-config"));
    assert!(status.success(), "reading back --print-config: {err}");
    assert_eq!(
        again, text,
        "the printed file reads back to the same settings"
    );

    // Secrets print redacted, and the placeholder is refused when read back.
    let (status, text, err) = run(wsd_command()
        .env("PUBLISH_KEY", "s3cret")
        .arg("--print-config"));
    assert!(status.success(), "{err}");
    assert!(!text.contains("s3cret"), "secret printed: {text}");
    assert!(text.contains("publish_key = \"***\""), "{text}");
    assert!(text.contains("# metrics_key = (unset)"), "{text}");
    let file = write(&d.join("secret.toml"), &text);
    refused(
        wsd_command().arg("--config").arg(&file),
        &["invalid publish_key", "***"],
        "redacted secret read back",
    );
}

#[test]
fn the_sample_file_sets_every_knob_to_its_default() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wsd.toml");
    let text = std::fs::read_to_string(&sample).expect("examples/wsd.toml");
    for key in knob_keys() {
        assert!(
            text.lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} = "))),
            "examples/wsd.toml does not mention {key}"
        );
    }
    let (status, from_sample, err) = run(wsd_command()
        .arg("--config")
        .arg(&sample)
        .arg("--print-config"));
    assert!(status.success(), "examples/wsd.toml: {err}");
    let (_, defaults, _) = run(wsd_command().arg("--print-config"));
    assert_eq!(from_sample, defaults, "the sample documents the defaults");
}

#[test]
fn a_world_readable_file_with_a_secret_is_warned_about_without_the_secret() {
    let d = dir("perm");
    let file = write(
        &d.join("wsd.toml"),
        "port = 0\nhost = \"127.0.0.1\"\ncluster_workers = 1\nwsd_io = \"epoll\"\n\
         publish_key = \"t0ps3cret\"\n",
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut child = wsd_command()
        .arg("--config")
        .arg(&file)
        .env("LOG_FORMAT", "pretty")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsd");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let started = line.contains("wsd listening");
        seen.push(line);
        if started {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let all = seen.join("\n");
    assert!(all.contains("wsd listening"), "wsd did not start: {all}");
    assert!(!all.contains("t0ps3cret"), "the secret was logged: {all}");
    let warned = seen
        .iter()
        .any(|l| l.contains("publish_key") && l.contains("every user may read"));
    assert!(warned, "no warning about a world-readable secret: {all}");
}
