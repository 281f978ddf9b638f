//! Which format a scrape gets ([`Format::negotiate`], from its `Accept` header), and the classic
//! Prometheus text format (version 0.0.4), made from the OpenMetrics exposition, for scrapers
//! that ask for `text/plain` (older Prometheus versions, `promtool`, some agents).
//!
//! The two formats share their sample lines here (wsd writes no exemplars, timestamps or
//! `_created` samples); only the metadata differs:
//! - a counter family `x` is described as `x_total` (its samples' name), and an info family `x`
//!   becomes the gauge `x_info`, 0.0.4 having no info type;
//! - `# UNIT` lines and the closing `# EOF` are OpenMetrics-only and are left out.

/// The `Content-Type` of a `/metrics` answer in the classic Prometheus text format.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which exposition format a scrape gets (`Accept`, see [`Format::negotiate`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 ([`CONTENT_TYPE`](super::CONTENT_TYPE)): the default.
    #[default]
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4 ([`CLASSIC_CONTENT_TYPE`]), for scrapers that
    /// ask for `text/plain` and not OpenMetrics.
    Classic,
}

impl Format {
    /// The format for a request's `Accept` header: classic when it names `text/plain` and not
    /// `application/openmetrics-text`; OpenMetrics otherwise (no header, `*/*`, OpenMetrics
    /// named, or anything unparsable).
    pub fn negotiate(accept: Option<&[u8]>) -> Format {
        let Some(accept) = accept.and_then(|a| std::str::from_utf8(a).ok()) else {
            return Format::OpenMetrics;
        };
        let accept = accept.to_ascii_lowercase();
        let names = |kind: &str| {
            accept
                .split(',')
                .any(|item| item.split(';').next().is_some_and(|m| m.trim() == kind))
        };
        if names("text/plain") && !names("application/openmetrics-text") {
            Format::Classic
        } else {
            Format::OpenMetrics
        }
    }

    /// The answer's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => super::CONTENT_TYPE,
            Format::Classic => CLASSIC_CONTENT_TYPE,
        }
    }
}

/// Rewrites an OpenMetrics exposition (as [`super::render_for`] writes it) as version 0.0.4.
pub fn from_openmetrics(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // A family's HELP line comes before its TYPE line, which decides the name both carry.
    let mut help: Option<(&str, &str)> = None;
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take(), None);
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                other => (name.to_owned(), other),
            };
            flush_help(&mut out, help.take(), Some(&name));
            out.push_str("# TYPE ");
            out.push_str(&name);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
            continue;
        }
        flush_help(&mut out, help.take(), None);
        out.push_str(line);
        out.push('\n');
    }
    flush_help(&mut out, help, None);
    out
}

/// Writes a pending HELP line, under `name` when its TYPE line renamed the family.
fn flush_help(out: &mut String, help: Option<(&str, &str)>, name: Option<&str>) {
    if let Some((family, text)) = help {
        out.push_str("# HELP ");
        out.push_str(name.unwrap_or(family));
        out.push(' ');
        out.push_str(text);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_infos_are_renamed_and_openmetrics_lines_dropped() {
        let om = "# HELP wsd_build The running wsd.\n# TYPE wsd_build info\n\
                  wsd_build_info{version=\"1\"} 1\n\
                  # HELP wsd_closes Closes.\n# TYPE wsd_closes counter\n\
                  wsd_closes_total{worker=\"0\"} 3\n\
                  # HELP wsd_queued_bytes Bytes.\n# TYPE wsd_queued_bytes gauge\n# UNIT wsd_queued_bytes bytes\n\
                  wsd_queued_bytes{worker=\"0\"} 0\n\
                  # HELP d Delay.\n# TYPE d histogram\nd_sum 0.5\nd_count 1\nd_bucket{le=\"+Inf\"} 1\n\
                  # EOF\n";
        let classic = from_openmetrics(om);
        assert_eq!(
            classic,
            "# HELP wsd_build_info The running wsd.\n# TYPE wsd_build_info gauge\n\
             wsd_build_info{version=\"1\"} 1\n\
             # HELP wsd_closes_total Closes.\n# TYPE wsd_closes_total counter\n\
             wsd_closes_total{worker=\"0\"} 3\n\
             # HELP wsd_queued_bytes Bytes.\n# TYPE wsd_queued_bytes gauge\n\
             wsd_queued_bytes{worker=\"0\"} 0\n\
             # HELP d Delay.\n# TYPE d histogram\nd_sum 0.5\nd_count 1\nd_bucket{le=\"+Inf\"} 1\n"
        );
    }

    #[test]
    fn accept_picks_classic_only_for_plain_text_without_openmetrics() {
        let f = |a: &str| Format::negotiate(Some(a.as_bytes()));
        assert_eq!(Format::negotiate(None), Format::OpenMetrics);
        assert_eq!(f("*/*"), Format::OpenMetrics);
        assert_eq!(f("text/plain"), Format::Classic);
        assert_eq!(
            f("Text/Plain; version=0.0.4; q=0.9, */*;q=0.1"),
            Format::Classic
        );
        assert_eq!(
            f("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
            Format::OpenMetrics
        );
        assert_eq!(f("text/plainish"), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some(&[0xff, 0xfe])), Format::OpenMetrics);
    }
}
