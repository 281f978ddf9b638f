//! Which topics this instance wants from Redis: a topic's channel is subscribed while at least
//! one worker has a local subscriber of it, and unsubscribed only after it has had none for the
//! hysteresis time, so a subscriber that flaps does not storm Redis. Changes are handed out in
//! batches ([`InterestSet::take_changes`]) that the link sends as one pipeline.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Subscriptions to send and withdraw, in one batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Topics to subscribe to.
    pub subscribe: Vec<Arc<str>>,
    /// Topics to unsubscribe from.
    pub unsubscribe: Vec<Arc<str>>,
}

impl Changes {
    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.subscribe.is_empty() && self.unsubscribe.is_empty()
    }
}

/// The interest of one instance, kept by the Redis link thread.
#[derive(Debug)]
pub struct InterestSet {
    hysteresis: Duration,
    /// Workers with local subscribers, per topic (only topics with at least one).
    workers: HashMap<Arc<str>, u32>,
    /// Topics subscribed on the current Redis connection (or sent to be).
    subscribed: HashSet<Arc<str>>,
    /// Wanted but not yet sent.
    to_subscribe: HashSet<Arc<str>>,
    /// Subscribed but no longer wanted, with the time they may be withdrawn.
    leaving: HashMap<Arc<str>, Instant>,
}

impl InterestSet {
    /// An empty set that waits `hysteresis` before withdrawing a subscription.
    pub fn new(hysteresis: Duration) -> Self {
        InterestSet {
            hysteresis,
            workers: HashMap::new(),
            subscribed: HashSet::new(),
            to_subscribe: HashSet::new(),
            leaving: HashMap::new(),
        }
    }

    /// A worker gained its first (`gained`) or lost its last local subscriber of `topic`.
    pub fn update(&mut self, topic: Arc<str>, gained: bool, now: Instant) {
        if gained {
            let count = self.workers.entry(topic.clone()).or_insert(0);
            *count += 1;
            if *count == 1
                && self.leaving.remove(&topic).is_none()
                && !self.subscribed.contains(&topic)
            {
                self.to_subscribe.insert(topic);
            }
            return;
        }
        let Some(count) = self.workers.get_mut(&topic) else {
            return; // a loss without a gain: nothing to undo
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        self.workers.remove(&topic);
        if !self.to_subscribe.remove(&topic) && self.subscribed.contains(&topic) {
            self.leaving.insert(topic, now + self.hysteresis);
        }
    }

    /// Whether [`take_changes`](Self::take_changes) at `now` would return something.
    pub fn has_changes(&self, now: Instant) -> bool {
        !self.to_subscribe.is_empty() || self.leaving.values().any(|&due| due <= now)
    }

    /// The subscriptions to send now and the withdrawals that are due, recorded as done.
    pub fn take_changes(&mut self, now: Instant) -> Changes {
        let subscribe: Vec<Arc<str>> = self.to_subscribe.drain().collect();
        self.subscribed.extend(subscribe.iter().cloned());
        let mut unsubscribe = Vec::new();
        self.leaving.retain(|topic, due| {
            if *due <= now {
                unsubscribe.push(topic.clone());
                false
            } else {
                true
            }
        });
        for topic in &unsubscribe {
            self.subscribed.remove(topic);
        }
        Changes {
            subscribe,
            unsubscribe,
        }
    }

    /// A new connection has no subscriptions: everything wanted is to be subscribed again, and
    /// what was only waiting to be withdrawn is forgotten.
    pub fn reconnected(&mut self) {
        for (topic, _) in self.leaving.drain() {
            self.subscribed.remove(&topic);
        }
        self.to_subscribe.extend(self.subscribed.drain());
    }

    /// Topics subscribed (or sent to be) on the current connection.
    pub fn subscribed(&self) -> usize {
        self.subscribed.len()
    }

    /// Topics some worker wants.
    pub fn wanted(&self) -> usize {
        self.workers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(2);

    fn topic(s: &str) -> Arc<str> {
        s.into()
    }

    fn sorted(mut v: Vec<Arc<str>>) -> Vec<Arc<str>> {
        v.sort();
        v
    }

    #[test]
    fn subscribes_once_per_topic_and_withdraws_after_the_hysteresis() {
        let t0 = Instant::now();
        let mut set = InterestSet::new(H);
        set.update(topic("a"), true, t0);
        set.update(topic("a"), true, t0); // a second worker
        set.update(topic("b"), true, t0);
        let c = set.take_changes(t0);
        assert_eq!(sorted(c.subscribe), [topic("a"), topic("b")]);
        assert!(c.unsubscribe.is_empty());
        assert!(!set.has_changes(t0));

        set.update(topic("a"), false, t0);
        assert!(!set.has_changes(t0 + H), "one worker still wants a");
        set.update(topic("a"), false, t0);
        assert!(!set.has_changes(t0 + H / 2), "within the hysteresis");
        assert!(set.has_changes(t0 + H));
        let c = set.take_changes(t0 + H);
        assert_eq!(c.unsubscribe, [topic("a")]);
        assert_eq!(set.subscribed(), 1);
        assert_eq!(set.wanted(), 1);
    }

    #[test]
    fn a_flapping_subscriber_sends_nothing() {
        let t0 = Instant::now();
        let mut set = InterestSet::new(H);
        set.update(topic("a"), true, t0);
        set.take_changes(t0);
        for i in 0..100 {
            let now = t0 + Duration::from_millis(i);
            set.update(topic("a"), false, now);
            set.update(topic("a"), true, now);
        }
        assert!(!set.has_changes(t0 + H * 10));
        assert_eq!(set.take_changes(t0 + H * 10), Changes::default());
    }

    #[test]
    fn a_topic_left_before_it_was_sent_is_never_sent() {
        let t0 = Instant::now();
        let mut set = InterestSet::new(H);
        set.update(topic("a"), true, t0);
        set.update(topic("a"), false, t0);
        assert!(!set.has_changes(t0 + H));
        assert_eq!(set.subscribed(), 0);
    }

    #[test]
    fn a_loss_without_a_gain_is_ignored() {
        let t0 = Instant::now();
        let mut set = InterestSet::new(H);
        set.update(topic("a"), false, t0);
        assert!(!set.has_changes(t0 + H));
        assert_eq!(set.wanted(), 0);
    }

    #[test]
    fn a_reconnect_resubscribes_what_is_wanted_only() {
        let t0 = Instant::now();
        let mut set = InterestSet::new(H);
        set.update(topic("a"), true, t0);
        set.update(topic("b"), true, t0);
        set.take_changes(t0);
        set.update(topic("b"), false, t0); // leaving
        set.update(topic("c"), true, t0); // not yet sent
        set.reconnected();
        let c = set.take_changes(t0);
        assert_eq!(sorted(c.subscribe), [topic("a"), topic("c")]);
        assert!(c.unsubscribe.is_empty());
        assert!(
            !set.has_changes(t0 + H * 2),
            "b is not withdrawn from a connection without it"
        );
    }
}
