//! Topic patterns for per-topic rights: `chat:*`, `user:{sub}:>`, `news`.
//!
//! A topic is split into segments at `:`. In a pattern, a segment `*` matches exactly one topic
//! segment (any text, even empty), a final segment `>` matches one or more trailing segments, and
//! any other segment matches itself. `{sub}` inside a segment is replaced by the connection's
//! identity when the pattern is bound to it ([`Template::bind`]); the identity is always taken
//! literally (an identity of `*` matches only a segment `*`, one containing `:` matches nothing).
//!
//! Patterns are parsed once (at start for the server-wide lists, at upgrade for a token's claims)
//! and matched without allocating.
#![forbid(unsafe_code)]

use std::fmt;

/// Longest pattern accepted, in bytes (a topic name is at most 256 bytes).
pub const MAX_PATTERN_LEN: usize = 256;
/// Most patterns in one list (a token's `subscribe` claim, `ANON_PUBLISH`, ...).
pub const MAX_PATTERNS: usize = 64;
/// The placeholder replaced by the identity.
const SUB: &str = "{sub}";

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PatternError {}

/// One segment of a parsed pattern, before the identity is known.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplateSeg {
    /// Literal text with `{sub}` placeholders between its pieces (one piece: no placeholder).
    Text(Vec<Box<str>>),
    /// `*`.
    One,
}

/// A parsed pattern that may still contain `{sub}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segs: Vec<TemplateSeg>,
    /// Ends with `>`.
    rest: bool,
}

impl Template {
    /// Parses one pattern.
    pub fn parse(text: &str) -> Result<Template, PatternError> {
        if text.is_empty() || text.len() > MAX_PATTERN_LEN {
            return Err(PatternError(format!(
                "a pattern must be 1 to {MAX_PATTERN_LEN} bytes"
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(PatternError(
                "a pattern must not contain control characters".into(),
            ));
        }
        let parts: Vec<&str> = text.split(':').collect();
        let last = parts.len() - 1;
        let mut segs = Vec::with_capacity(parts.len());
        let mut rest = false;
        for (i, part) in parts.iter().enumerate() {
            match *part {
                ">" if i == last => rest = true,
                ">" => {
                    return Err(PatternError(format!(
                        "'{text}': `>` may only be the last segment"
                    )));
                }
                "*" => segs.push(TemplateSeg::One),
                p if p.contains(['*', '>']) => {
                    return Err(PatternError(format!(
                        "'{text}': `*` and `>` must be whole segments"
                    )));
                }
                p => {
                    let pieces: Vec<Box<str>> = p.split(SUB).map(Box::from).collect();
                    if pieces.iter().any(|piece| piece.contains(['{', '}'])) {
                        return Err(PatternError(format!(
                            "'{text}': the only placeholder is {{sub}}"
                        )));
                    }
                    segs.push(TemplateSeg::Text(pieces));
                }
            }
        }
        Ok(Template { segs, rest })
    }

    /// Whether the pattern contains `{sub}`.
    pub fn uses_sub(&self) -> bool {
        self.segs
            .iter()
            .any(|s| matches!(s, TemplateSeg::Text(p) if p.len() > 1))
    }

    /// The pattern with `{sub}` replaced by `sub` (`None`: anonymous, and the pattern needs an
    /// identity, so it matches nothing).
    pub fn bind(&self, sub: Option<&str>) -> Option<Pattern> {
        let mut segs = Vec::with_capacity(self.segs.len());
        for seg in &self.segs {
            segs.push(match seg {
                TemplateSeg::One => Seg::One,
                TemplateSeg::Text(pieces) if pieces.len() == 1 => Seg::Lit(pieces[0].clone()),
                TemplateSeg::Text(pieces) => Seg::Lit(pieces.join(sub?).into()),
            });
        }
        Some(Pattern {
            segs: segs.into_boxed_slice(),
            rest: self.rest,
        })
    }
}

/// One segment of a bound pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(Box<str>),
    One,
}

/// A pattern bound to an identity: matches topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    segs: Box<[Seg]>,
    rest: bool,
}

impl Pattern {
    /// Whether `topic` matches.
    pub fn matches(&self, topic: &str) -> bool {
        let mut parts = topic.split(':');
        for seg in &self.segs {
            match (seg, parts.next()) {
                (_, None) => return false,
                (Seg::One, Some(_)) => {}
                (Seg::Lit(lit), Some(part)) => {
                    if **lit != *part {
                        return false;
                    }
                }
            }
        }
        if self.rest {
            parts.next().is_some()
        } else {
            parts.next().is_none()
        }
    }

    /// Whether the pattern is `>` alone: every topic.
    fn is_everything(&self) -> bool {
        self.rest && self.segs.is_empty()
    }
}

/// A list of patterns as configured or claimed, not yet bound to an identity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateList {
    templates: Vec<Template>,
    text: Vec<String>,
}

impl TemplateList {
    /// Parses a list of patterns (at most [`MAX_PATTERNS`]).
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<TemplateList, PatternError> {
        if items.len() > MAX_PATTERNS {
            return Err(PatternError(format!(
                "at most {MAX_PATTERNS} patterns in one list"
            )));
        }
        let mut list = TemplateList::default();
        for item in items {
            let item = item.as_ref();
            list.templates.push(Template::parse(item)?);
            list.text.push(item.to_owned());
        }
        Ok(list)
    }

    /// Parses a comma-separated list; `none` (or nothing) is the empty list.
    pub fn parse_comma(text: &str) -> Result<TemplateList, PatternError> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("none") {
            return Ok(TemplateList::default());
        }
        let items: Vec<&str> = text.split(',').map(str::trim).collect();
        TemplateList::parse(&items)
    }

    /// Whether any pattern contains `{sub}`.
    pub fn uses_sub(&self) -> bool {
        self.templates.iter().any(Template::uses_sub)
    }

    /// The list bound to an identity (`None`: anonymous).
    pub fn bind(&self, sub: Option<&str>) -> PatternSet {
        let patterns: Vec<Pattern> = self.templates.iter().filter_map(|t| t.bind(sub)).collect();
        PatternSet::new(patterns)
    }

    /// The patterns as written, comma-separated (`none` when empty).
    pub fn to_text(&self) -> String {
        if self.text.is_empty() {
            "none".to_owned()
        } else {
            self.text.join(",")
        }
    }
}

/// Patterns bound to one identity: what a connection may subscribe to or publish on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatternSet {
    patterns: Box<[Pattern]>,
    everything: bool,
}

impl PatternSet {
    fn new(patterns: Vec<Pattern>) -> Self {
        let everything = patterns.iter().any(Pattern::is_everything);
        PatternSet {
            patterns: patterns.into_boxed_slice(),
            everything,
        }
    }

    /// A set that allows every topic.
    pub fn everything() -> Self {
        PatternSet::new(vec![Pattern {
            segs: Box::new([]),
            rest: true,
        }])
    }

    /// Whether any pattern matches `topic`.
    pub fn allows(&self, topic: &str) -> bool {
        self.everything || self.patterns.iter().any(|p| p.matches(topic))
    }

    /// Whether the set allows every topic (`>`), so checks may be skipped.
    pub fn allows_everything(&self) -> bool {
        self.everything
    }

    /// Whether the set allows nothing.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

#[cfg(test)]
mod tests;
