//! `wsd --print-config`: the effective configuration (defaults, file, environment and flags
//! applied) as a TOML file that `--config` reads back. Secrets are shown as `"***"`, which the
//! secret parser refuses, so a printed file with a secret in it must have the real key put back
//! before it is used.

use clap::ValueEnum;
use toml::Value;

use super::{Config, MaxConnections, MaxQueuedBytes, REDACTED, Workers};

impl Config {
    /// The configuration as a TOML document, one `key = value` line per knob in `--help` order;
    /// unset optional knobs are commented out, secrets are redacted.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# wsd configuration: defaults < this file < environment < flags.\n\
             # Keys are the environment variables in lower case. Secrets print as \"***\":\n\
             # put the real value back before using this file.\n",
        );
        for (key, value) in self.entries() {
            match value {
                Some(v) => out.push_str(&format!("{key} = {v}\n")),
                None => out.push_str(&format!("# {key} = (unset)\n")),
            }
        }
        out
    }

    /// Every knob as its file key and value (`None`: unset).
    fn entries(&self) -> Vec<(&'static str, Option<Value>)> {
        let int = |n: u64| Some(Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
        let size = |n: usize| int(n as u64);
        let secret =
            |s: &Option<super::Secret>| s.as_ref().map(|_| Value::String(REDACTED.to_owned()));
        let mut entries = vec![
            ("port", int(u64::from(self.port))),
            ("host", Some(Value::String(self.host.to_string()))),
            (
                "cluster_workers",
                match self.cluster_workers {
                    Workers::Auto => Some(Value::String("auto".to_owned())),
                    Workers::Count(n) => size(n),
                },
            ),
            ("ws_path", Some(Value::String(self.ws_path.clone()))),
            ("max_payload", size(self.max_payload)),
            ("wsd_io", name(self.io)),
            ("wsd_app", name(self.app)),
            ("log_level", name(self.log_level)),
            ("idle_timeout", int(u64::from(self.idle_timeout))),
            ("send_pings", Some(Value::Boolean(self.send_pings))),
            ("max_subscriptions", size(self.max_subscriptions)),
            ("max_backpressure", size(self.max_backpressure)),
            ("backpressure_policy", name(self.backpressure_policy)),
            ("write_delay_ms", int(u64::from(self.write_delay_ms))),
            ("send_buffer", size(self.send_buffer)),
            (
                "max_queued_bytes",
                match self.max_queued_bytes {
                    MaxQueuedBytes::Auto => Some(Value::String("auto".to_owned())),
                    MaxQueuedBytes::Off => int(0),
                    MaxQueuedBytes::Bytes(n) => int(n),
                },
            ),
            ("publish_key", secret(&self.publish_key)),
            ("shutdown_timeout", int(u64::from(self.shutdown_timeout))),
            (
                "max_connections",
                match self.max_connections {
                    MaxConnections::Auto => Some(Value::String("auto".to_owned())),
                    MaxConnections::Count(n) => size(n),
                },
            ),
            ("max_connections_per_ip", size(self.max_connections_per_ip)),
            ("upgrade_max_concurrent", size(self.upgrade_max_concurrent)),
            (
                "upgrade_max_concurrent_per_ip",
                size(self.upgrade_max_concurrent_per_ip),
            ),
            ("payload_limit_policy", name(self.payload_limit_policy)),
            ("compression", name(self.compression)),
            ("compression_min_size", size(self.compression_min_size)),
            ("metrics_key", secret(&self.metrics_key)),
            (
                "admin_port",
                self.admin_port.and_then(|p| int(u64::from(p))),
            ),
            (
                "redis_url",
                self.redis_url
                    .as_ref()
                    .map(|_| Value::String(REDACTED.to_owned())),
            ),
            (
                "redis_prefix",
                Some(Value::String(self.redis_prefix.clone())),
            ),
            ("redis_sharded", Some(Value::Boolean(self.redis_sharded))),
            ("log_format", name(self.log_format)),
            ("wsd_relay_wake", name(self.relay_wake)),
            ("ssl_cert", path(&self.ssl_cert)),
            ("ssl_key", path(&self.ssl_key)),
            ("ssl_client_ca", path(&self.ssl_client_ca)),
        ];
        let a = &self.access;
        let text = |s: String| Some(Value::String(s));
        entries.extend([
            ("jwt_secret", secret(&a.jwt_secret)),
            (
                "jwt_public_key",
                a.jwt_public_key
                    .as_ref()
                    .map(|k| Value::String(k.path.display().to_string())),
            ),
            ("jwt_audience", a.jwt_audience.clone().map(Value::String)),
            ("jwt_issuer", a.jwt_issuer.clone().map(Value::String)),
            ("jwt_leeway", int(a.jwt_leeway)),
            ("auth_required", a.auth_required.map(Value::Boolean)),
            (
                "anon_subscribe",
                a.anon_subscribe.as_ref().and_then(|k| text(k.to_string())),
            ),
            (
                "anon_publish",
                a.anon_publish.as_ref().and_then(|k| text(k.to_string())),
            ),
            (
                "default_subscribe",
                a.default_subscribe
                    .as_ref()
                    .and_then(|k| text(k.to_string())),
            ),
            (
                "default_publish",
                a.default_publish.as_ref().and_then(|k| text(k.to_string())),
            ),
            (
                "allowed_origins",
                a.allowed_origins.as_ref().and_then(|k| text(k.to_string())),
            ),
            ("rate_limit", text(a.rate_limit.to_string())),
            ("rate_limit_cost", text(a.rate_limit_cost.to_string())),
            ("rate_limit_strikes", int(u64::from(a.rate_limit_strikes))),
            (
                "rate_limit_identity",
                text(a.rate_limit_identity.to_string()),
            ),
            (
                "upgrade_rate_per_ip",
                text(a.upgrade_rate_per_ip.to_string()),
            ),
        ]);
        entries
    }
}

/// A file path knob's value (`None`: unset).
fn path(value: &Option<std::path::PathBuf>) -> Option<Value> {
    value
        .as_ref()
        .map(|p| Value::String(p.to_string_lossy().into_owned()))
}

/// An enumerated knob's value as its flag spelling (`drop-newest`).
fn name<T: ValueEnum>(value: T) -> Option<Value> {
    value
        .to_possible_value()
        .map(|p| Value::String(p.get_name().to_owned()))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_knob_is_printed_in_help_order() {
        let keys: Vec<String> = Config::command()
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|env| env.to_string_lossy().to_ascii_lowercase())
            .collect();
        let printed: Vec<&str> = Config::default().entries().iter().map(|e| e.0).collect();
        assert_eq!(printed, keys);
    }

    #[test]
    fn secrets_are_redacted_and_unset_ones_commented() {
        let c = Config {
            publish_key: Some("hunter2".parse().expect("valid key")),
            redis_url: Some(
                "redis://app:pa55word@cache:6379"
                    .parse()
                    .expect("valid URL"),
            ),
            ..Config::default()
        };
        let text = c.to_toml();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("pa55word"), "{text}");
        assert!(text.contains("redis_url = \"***\"\n"), "{text}");
        assert!(text.contains("publish_key = \"***\"\n"), "{text}");
        assert!(text.contains("# metrics_key = (unset)\n"), "{text}");
        assert!(text.contains("cluster_workers = \"auto\"\n"), "{text}");
        assert!(
            text.contains("backpressure_policy = \"drop-newest\"\n"),
            "{text}"
        );
        let parsed: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(parsed.get("port"), Some(&Value::Integer(3000)));
    }
}
