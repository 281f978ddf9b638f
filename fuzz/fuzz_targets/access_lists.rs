//! The access-control parsers and matchers against arbitrary text: topic patterns (parsed, bound
//! to an identity, matched against a topic), `ALLOWED_ORIGINS` lists and `Origin` values, rate
//! and cost knobs. None may panic; a list holding `>` must allow every topic, and a pattern
//! without wildcards or `{sub}` must match exactly itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsd::access::origin::OriginList;
use wsd::access::pattern::{Template, TemplateList};
use wsd::ratelimit::{Costs, Rate};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{0}');
    let (pattern, topic, sub) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next(),
    );
    if let Ok(t) = Template::parse(pattern) {
        if let Some(p) = t.bind(sub) {
            let hit = p.matches(topic);
            let literal = !pattern.contains(['*', '>']) && !t.uses_sub();
            if literal {
                assert_eq!(hit, pattern == topic, "{pattern:?} vs {topic:?}");
            }
        }
    }
    if let Ok(list) = TemplateList::parse_comma(pattern) {
        let set = list.bind(sub);
        let _ = set.allows(topic);
        if pattern.split(',').any(|p| p.trim() == ">") {
            assert!(set.allows_everything() && set.allows(topic));
        }
        assert_eq!(
            TemplateList::parse_comma(&list.to_text()).as_ref(),
            Ok(&list)
        );
    }
    if let Ok(origins) = pattern.parse::<OriginList>() {
        let _ = origins.allows(topic.as_bytes());
        let again: OriginList = origins.to_string().parse().expect("printed list parses");
        assert_eq!(again, origins);
    }
    if let Ok(rate) = pattern.parse::<Rate>() {
        assert!(rate.interval_ns() > 0 && rate.span_ns() >= rate.interval_ns());
    }
    if let Ok(costs) = pattern.parse::<Costs>() {
        assert_eq!(costs.to_string().parse::<Costs>(), Ok(costs));
    }
});
