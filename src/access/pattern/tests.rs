use proptest::prelude::*;

use super::*;

fn set(patterns: &[&str], sub: Option<&str>) -> PatternSet {
    TemplateList::parse(patterns)
        .expect("valid patterns")
        .bind(sub)
}

#[test]
fn literal_star_and_rest() {
    let s = set(&["news", "chat:*", "feed:>"], None);
    assert!(s.allows("news"));
    assert!(!s.allows("news:x"));
    assert!(!s.allows("new"));
    assert!(s.allows("chat:1"));
    assert!(s.allows("chat:"), "`*` matches an empty segment");
    assert!(!s.allows("chat"));
    assert!(!s.allows("chat:1:2"));
    assert!(s.allows("feed:a"));
    assert!(s.allows("feed:a:b:c"));
    assert!(!s.allows("feed"), "`>` needs at least one more segment");
    assert!(!s.allows("feedx:a"));
}

#[test]
fn sub_is_bound_literally() {
    let s = set(&["user:{sub}:>", "dm-{sub}"], Some("alice"));
    assert!(s.allows("user:alice:inbox"));
    assert!(s.allows("dm-alice"));
    assert!(!s.allows("user:bob:inbox"));
    assert!(!s.allows("user:alice"));
    // An identity full of pattern syntax is still a literal.
    let s = set(&["user:{sub}:*"], Some("*"));
    assert!(s.allows("user:*:x"));
    assert!(!s.allows("user:bob:x"));
    let s = set(&["user:{sub}:*"], Some("a:b"));
    assert!(
        !s.allows("user:a:b:x"),
        "an identity with `:` matches nothing"
    );
    // Anonymous: patterns that need an identity match nothing, the others still apply.
    let s = set(&["user:{sub}:*", "lobby"], None);
    assert!(!s.allows("user::x"));
    assert!(s.allows("lobby"));
}

#[test]
fn everything_and_nothing() {
    assert!(set(&[">"], None).allows_everything());
    assert!(set(&["a", ">"], None).allows("anything:at:all"));
    assert!(!set(&["a:>"], None).allows_everything());
    let none = TemplateList::parse_comma("none")
        .expect("none")
        .bind(Some("x"));
    assert!(none.is_empty());
    assert!(!none.allows("a"));
    assert!(PatternSet::everything().allows("x:y"));
}

#[test]
fn bad_patterns_are_refused() {
    for bad in [
        "", "a:>:b", "a*", "*b:c", "a:>x", "x>", "{user}", "a:{sub", "a\u{1}", "}",
    ] {
        assert!(Template::parse(bad).is_err(), "{bad:?} accepted");
    }
    let long = "a".repeat(MAX_PATTERN_LEN + 1);
    assert!(Template::parse(&long).is_err());
    let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("t{i}")).collect();
    assert!(TemplateList::parse(&many).is_err());
}

#[test]
fn comma_lists_round_trip() {
    let l = TemplateList::parse_comma(" chat:* , user:{sub}:> ").expect("valid");
    assert_eq!(l.to_text(), "chat:*,user:{sub}:>");
    assert!(l.uses_sub());
    assert_eq!(
        TemplateList::parse_comma("").expect("empty").to_text(),
        "none"
    );
}

/// The matcher written the obvious way, to check the compiled one against.
fn reference(pattern: &str, sub: Option<&str>, topic: &str) -> bool {
    let pat: Vec<&str> = pattern.split(':').collect();
    let top: Vec<&str> = topic.split(':').collect();
    let (pat, rest) = match pat.split_last() {
        Some((&">", init)) => (init, true),
        _ => (&pat[..], false),
    };
    if rest && top.len() <= pat.len() || !rest && top.len() != pat.len() {
        return false;
    }
    pat.iter().zip(&top).all(|(p, t)| {
        if *p == "*" {
            return true;
        }
        if p.contains("{sub}") {
            match sub {
                Some(s) => p.replace("{sub}", s) == *t && !s.contains(':'),
                None => false,
            }
        } else {
            p == t
        }
    })
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        Just("{sub}".to_owned()),
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("x{sub}".to_owned()),
        Just(String::new()),
    ]
}

proptest! {
    #[test]
    fn compiled_matches_reference(
        segs in prop::collection::vec(segment(), 1..5),
        rest in any::<bool>(),
        topic in prop::collection::vec(prop_oneof![Just("a"), Just("b"), Just("u"), Just("xu"), Just("*"), Just("")], 1..6),
        sub in prop::option::of(prop_oneof![Just("u"), Just("a:b"), Just("*")]),
    ) {
        let mut pattern = segs.join(":");
        if rest {
            pattern.push_str(":>");
        }
        let topic = topic.join(":");
        // Patterns the parser refuses (e.g. empty) are not compared.
        if let Ok(t) = Template::parse(&pattern) {
            let got = t.bind(sub).is_some_and(|p| p.matches(&topic));
            prop_assert_eq!(got, reference(&pattern, sub, &topic), "{} vs {}", pattern, topic);
        }
    }

    #[test]
    fn parse_never_panics(text in ".{0,300}", topic in ".{0,64}") {
        if let Ok(t) = Template::parse(&text) {
            let _ = t.bind(Some("s")).map(|p| p.matches(&topic));
        }
    }
}
