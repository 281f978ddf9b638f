//! Rate settings: `capacity/refill_per_second` (`RATE_LIMIT=100/20`, `UPGRADE_RATE_PER_IP=10/s`)
//! and the cost of each message type (`RATE_LIMIT_COST=PUBLISH:1,SUBSCRIBE:5`).
#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

/// Largest capacity or refill accepted.
pub const MAX_RATE: u32 = 1_000_000;
const NS_PER_S: u64 = 1_000_000_000;

/// A bucket's capacity and refill rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    capacity: u32,
    refill: u32,
    interval_ns: u64,
    span_ns: u64,
}

impl Rate {
    /// `capacity` tokens, refilled at `refill` per second (both from 1 to [`MAX_RATE`]).
    pub fn new(capacity: u32, refill: u32) -> Result<Rate, String> {
        if !(1..=MAX_RATE).contains(&capacity) || !(1..=MAX_RATE).contains(&refill) {
            return Err(format!(
                "capacity and refill must be numbers from 1 to {MAX_RATE}"
            ));
        }
        let interval_ns = NS_PER_S / u64::from(refill);
        Ok(Rate {
            capacity,
            refill,
            interval_ns,
            span_ns: u64::from(capacity) * interval_ns,
        })
    }

    /// Tokens the bucket holds when full.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Tokens added per second.
    pub fn refill(&self) -> u32 {
        self.refill
    }

    /// Nanoseconds per token.
    #[inline]
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// Nanoseconds to refill from empty.
    #[inline]
    pub fn span_ns(&self) -> u64 {
        self.span_ns
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.capacity, self.refill)
    }
}

impl FromStr for Rate {
    type Err = String;

    /// `capacity/refill` (`100/20`: up to 100 at once, 20 more per second), or `n/s` for a
    /// capacity of `n` refilled at `n` per second.
    fn from_str(s: &str) -> Result<Rate, String> {
        let why = || {
            format!(
                "must be `off`, capacity/refill_per_second (e.g. 100/20) or n/s, numbers from 1 to {MAX_RATE}"
            )
        };
        let (cap, refill) = s.trim().split_once('/').ok_or_else(why)?;
        let cap: u32 = cap.trim().parse().map_err(|_| why())?;
        let refill = match refill.trim() {
            "s" => cap,
            r => r.parse().map_err(|_| why())?,
        };
        Rate::new(cap, refill).map_err(|_| why())
    }
}

/// Parses a rate knob: `off` (or `0`) is `None`.
pub fn parse_optional(s: &str) -> Result<Option<Rate>, String> {
    match s.trim() {
        t if t.eq_ignore_ascii_case("off") || t == "0" => Ok(None),
        t => t.parse().map(Some),
    }
}

/// The message types that may cost differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// `SUBSCRIBE`.
    Subscribe,
    /// `UNSUBSCRIBE`.
    Unsubscribe,
    /// `PUBLISH`.
    Publish,
    /// `PING`.
    Ping,
    /// `AUTH`.
    Auth,
    /// Anything else (invalid JSON, unknown type, binary, oversized).
    Other,
}

impl MessageType {
    const ALL: [(MessageType, &'static str); 6] = [
        (MessageType::Subscribe, "SUBSCRIBE"),
        (MessageType::Unsubscribe, "UNSUBSCRIBE"),
        (MessageType::Publish, "PUBLISH"),
        (MessageType::Ping, "PING"),
        (MessageType::Auth, "AUTH"),
        (MessageType::Other, "OTHER"),
    ];
}

/// What each message type costs (default 1 each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Costs([u32; 6]);

impl Default for Costs {
    fn default() -> Self {
        Costs([1; 6])
    }
}

impl Costs {
    /// The cost of one message of type `t`.
    #[inline]
    pub fn of(&self, t: MessageType) -> u32 {
        self.0[t as usize]
    }
}

impl fmt::Display for Costs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (t, name)) in MessageType::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{name}:{}", self.of(*t))?;
        }
        Ok(())
    }
}

impl FromStr for Costs {
    type Err = String;

    /// `TYPE:cost` pairs, comma-separated (`PUBLISH:1,SUBSCRIBE:5`); unnamed types cost 1.
    fn from_str(s: &str) -> Result<Costs, String> {
        let names = MessageType::ALL.map(|(_, n)| n).join(", ");
        let mut costs = Costs::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, cost) = item.split_once(':').ok_or_else(|| {
                format!("'{item}': must be TYPE:cost, e.g. PUBLISH:1,SUBSCRIBE:5")
            })?;
            let t = MessageType::ALL
                .iter()
                .find(|(_, n)| n.eq_ignore_ascii_case(name.trim()))
                .map(|(t, _)| *t)
                .ok_or_else(|| format!("'{name}': the types are {names}"))?;
            let cost: u32 = cost
                .trim()
                .parse()
                .ok()
                .filter(|c| *c <= MAX_RATE)
                .ok_or_else(|| format!("'{item}': a cost is a number from 0 to {MAX_RATE}"))?;
            costs.0[t as usize] = cost;
        }
        Ok(costs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        let r: Rate = "100/20".parse().expect("valid");
        assert_eq!((r.capacity(), r.refill()), (100, 20));
        assert_eq!(r.interval_ns(), 50_000_000);
        assert_eq!(r.to_string(), "100/20");
        let r: Rate = " 10/s ".parse().expect("valid");
        assert_eq!((r.capacity(), r.refill()), (10, 10));
        for bad in [
            "",
            "10",
            "0/1",
            "1/0",
            "a/b",
            "10/-1",
            "2000000/1",
            "1/2000000",
            "1/2/3",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_optional("off"), Ok(None));
        assert_eq!(parse_optional("OFF"), Ok(None));
        assert!(parse_optional("5/5").expect("ok").is_some());
    }

    #[test]
    fn costs_parse() {
        let c: Costs = "PUBLISH:1, subscribe:5,OTHER:0".parse().expect("valid");
        assert_eq!(c.of(MessageType::Subscribe), 5);
        assert_eq!(c.of(MessageType::Publish), 1);
        assert_eq!(c.of(MessageType::Ping), 1);
        assert_eq!(c.of(MessageType::Other), 0);
        assert_eq!(
            c.to_string(),
            "SUBSCRIBE:5,UNSUBSCRIBE:1,PUBLISH:1,PING:1,AUTH:1,OTHER:0"
        );
        assert_eq!(c.to_string().parse::<Costs>(), Ok(c));
        for bad in [
            "PUBLISH",
            "FOO:1",
            "PUBLISH:x",
            "PUBLISH:-1",
            "PING:9999999",
        ] {
            assert!(bad.parse::<Costs>().is_err(), "{bad:?} accepted");
        }
        assert_eq!("".parse::<Costs>(), Ok(Costs::default()));
    }
}
