//! The configuration file: `wsd --config wsd.toml` or `WSD_CONFIG=wsd.toml`.
//!
//! A flat TOML table whose keys are the environment variables in lower case (`port = 3000`,
//! `cluster_workers = "auto"`, `send_pings = false`). Numbers, strings and booleans are all
//! accepted where the knob's value parser accepts their text (`port = 3000` and `port = "3000"`).
//!
//! Each value is checked with the flag's own value parser, so the rules cannot diverge, and then
//! becomes that argument's default: the environment and the flags still override it. An unknown
//! key, a value of the wrong shape or a value the parser refuses is one line naming the file and
//! the key (`wsd.toml: unknown key 'prot'`, `wsd.toml: invalid max_payload '0': must be ...`).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::{Arg, Command, CommandFactory};

use super::Config;

/// The id of the `--config` argument (not a knob: never read from the file or printed).
pub const CONFIG_ARG: &str = "config";
/// The id of the `--print-config` argument.
pub const PRINT_ARG: &str = "print_config";

/// The file named by `--config FILE` or `--config=FILE` in `args`, else by `WSD_CONFIG` (an
/// empty value counts as unset). `args` starts with the program name.
pub fn path_from(args: &[OsString]) -> Option<PathBuf> {
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return rest.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("WSD_CONFIG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Reads `path` and makes each of its values the default of its argument in `cmd`. Warnings
/// (a secret in a file every user may read) are appended to `warnings`; an error is one line
/// naming the file.
pub fn apply(mut cmd: Command, path: &Path, warnings: &mut Vec<String>) -> Result<Command, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("{name}: {}", toml_error(&e, &text)))?;
    let knobs = Config::command();
    let mut secrets = Vec::new();
    for (key, value) in &table {
        let arg = knob(&knobs, key).ok_or_else(|| format!("{name}: unknown key '{key}'"))?;
        let secret = arg.is_hide_env_values_set();
        let raw = scalar(value).ok_or_else(|| {
            format!("{name}: invalid {key}: must be a number, a string or a boolean")
        })?;
        if let Err(why) = check(arg, &raw) {
            // A refused secret is not echoed: it may be most of the real one.
            let shown = if secret {
                String::new()
            } else {
                format!(" '{raw}'")
            };
            return Err(format!("{name}: invalid {key}{shown}: {why}"));
        }
        if secret {
            secrets.push(key.as_str());
        }
        cmd = cmd.mut_arg(arg.get_id(), |a| a.default_value(raw));
    }
    if !secrets.is_empty() {
        match std::fs::metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o004 != 0 => warnings.push(format!(
                "{name} holds {} and every user may read it; chmod o-r it",
                secrets.join(" and ")
            )),
            _ => {}
        }
    }
    Ok(cmd)
}

/// The knob whose environment variable is `key` in upper case.
fn knob<'a>(knobs: &'a Command, key: &str) -> Option<&'a Arg> {
    knobs.get_arguments().find(|a| {
        a.get_env()
            .and_then(|env| env.to_str())
            .is_some_and(|env| env.to_ascii_lowercase() == key)
    })
}

/// A TOML value as the text a flag would carry. Floats keep their point (`3000.0`), so a knob
/// that wants a whole number refuses them with its own message.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Float(f) => Some(format!("{f:?}")),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

/// Runs `raw` through `arg`'s value parser, as if given as its flag; `Err` is why it was refused.
fn check(arg: &Arg, raw: &str) -> Result<(), String> {
    let long = arg.get_long().unwrap_or_default();
    Command::new("wsd")
        .arg(arg.clone())
        .try_get_matches_from(["wsd".to_owned(), format!("--{long}={raw}")])
        .map(|_| ())
        .map_err(|e| super::why(&e))
}

/// A TOML syntax error as one line with its line number.
fn toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().lines().collect::<Vec<_>>().join("; ");
    match e.span() {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(0, |before| before.matches('\n').count())
                + 1;
            format!("invalid TOML at line {line}: {message}")
        }
        None => format!("invalid TOML: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `text` to a fresh file under the target directory and loads it with `args`.
    fn load(text: &str, args: &[&str]) -> Result<Config, String> {
        let dir = std::env::temp_dir().join(format!("wsd-config-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.join(format!("{:x}.toml", text.len() * 31 + args.len()));
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        let cmd = apply(Config::command(), &path, &mut Vec::new())?;
        let mut argv = vec!["wsd".to_owned()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        let m = cmd.try_get_matches_from(argv).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&path);
        Config::from_arg_matches(&m).map_err(|e| e.to_string())
    }

    use clap::FromArgMatches;

    #[test]
    fn numbers_strings_and_booleans_are_accepted() {
        let c = load(
            "port = 4000\nmax_payload = \"2048\"\nsend_pings = false\ncluster_workers = 3\n\
             max_connections = \"auto\"\nwsd_app = \"echo\"\n",
            &[],
        )
        .expect("valid file");
        assert_eq!(c.port, 4000);
        assert_eq!(c.max_payload, 2048);
        assert!(!c.send_pings);
        assert_eq!(c.cluster_workers, super::super::Workers::Count(3));
        assert_eq!(c.app, crate::app::AppKind::Echo);
        // A flag overrides the file.
        let c = load("port = 4000\n", &["--port", "5000"]).expect("valid");
        assert_eq!(c.port, 5000);
    }

    #[test]
    fn keys_are_the_lower_case_variables_only() {
        for (text, want) in [
            ("prot = 1\n", "unknown key 'prot'"),
            ("PORT = 1\n", "unknown key 'PORT'"),
            ("config = \"x\"\n", "unknown key 'config'"),
            ("wsd_config = \"x\"\n", "unknown key 'wsd_config'"),
            ("[server]\nport = 1\n", "unknown key 'server'"),
            ("port = [1]\n", "invalid port: must be a number"),
            (
                "port = 3000.0\n",
                "invalid port '3000.0': must be a number from 0",
            ),
            (
                "publish_key = \"a b\"\n",
                "invalid publish_key: must be a non-empty",
            ),
            (
                "publish_key = \"***\"\n",
                "invalid publish_key: must not be \"***\"",
            ),
            ("port = \n", "invalid TOML at line 1"),
        ] {
            let err = load(text, &[]).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn config_path_from_flag_forms() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            path_from(&args(&["wsd", "--port", "1", "--config", "a.toml"])),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            path_from(&args(&["wsd", "--config=b.toml"])),
            Some(PathBuf::from("b.toml"))
        );
    }
}
