//! A worker's topic table: topic → local subscribers and connection → its topics, kept in step
//! and emptied completely on unsubscribe and disconnect.
//!
//! The two sides point at each other: a topic's subscriber entry knows where the subscription sits
//! in the connection's list and the connection's entry knows where it sits in the topic's list, so
//! removing a subscriber is a `swap_remove` and two index fixes, not a search through a topic's
//! (possibly very long) subscriber list. A connection's own list is searched linearly; it holds at
//! most `MAX_SUBSCRIPTIONS` entries.

use std::collections::HashMap;

use crate::app::ConnId;

/// A topic's slot, with the slot's generation so a key kept past the topic's end (a delivery
/// deferred to the end of the turn) never reaches a topic that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicKey {
    index: u32,
    generation: u32,
}

#[derive(Debug)]
struct Topic {
    name: Box<str>,
    generation: u32,
    /// The subscribers, in no particular order (delivery walks this slice).
    subscribers: Vec<ConnId>,
    /// For each subscriber: where this topic sits in that connection's `by_conn` list.
    back: Vec<u32>,
}

/// One subscription as its connection lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    /// The topic's slot.
    topic: u32,
    /// Where the connection sits in the topic's `subscribers`.
    at: u32,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeError {
    /// The connection already holds the maximum number of subscriptions.
    TooMany,
}

/// The outcome of a subscribe: whether it is new, and whether the topic got its first local
/// subscriber (the worker's interest in the topic changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed {
    /// The connection was not subscribed before.
    pub new: bool,
    /// The topic had no local subscriber before.
    pub first: bool,
}

/// Topic → subscribers and connection → topics for one worker.
#[derive(Debug, Default)]
pub struct TopicTable {
    ids: HashMap<Box<str>, u32>,
    topics: Vec<Option<Topic>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    by_conn: HashMap<ConnId, Vec<Held>>,
    subscriptions: usize,
}

impl TopicTable {
    /// Subscribes `conn` to `name`, holding it to at most `max` subscriptions.
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        name: &str,
        max: usize,
    ) -> Result<Subscribed, SubscribeError> {
        let mine = self.by_conn.entry(conn).or_default();
        if let Some(&index) = self.ids.get(name)
            && mine.iter().any(|h| h.topic == index)
        {
            return Ok(Subscribed {
                new: false,
                first: false,
            });
        }
        if mine.len() >= max {
            if mine.is_empty() {
                self.by_conn.remove(&conn);
            }
            return Err(SubscribeError::TooMany);
        }
        let index = match self.ids.get(name) {
            Some(&index) => index,
            None => self.create(name),
        };
        let Some(Some(topic)) = self.topics.get_mut(index as usize) else {
            return Err(SubscribeError::TooMany); // unreachable: `create` filled the slot
        };
        let first = topic.subscribers.is_empty();
        let mine = self.by_conn.entry(conn).or_default();
        topic
            .back
            .push(u32::try_from(mine.len()).unwrap_or(u32::MAX));
        mine.push(Held {
            topic: index,
            at: u32::try_from(topic.subscribers.len()).unwrap_or(u32::MAX),
        });
        topic.subscribers.push(conn);
        self.subscriptions += 1;
        Ok(Subscribed { new: true, first })
    }

    fn create(&mut self, name: &str) -> u32 {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.topics.push(None);
                self.generations.push(0);
                u32::try_from(self.topics.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let generation = self.generations[index as usize];
        self.topics[index as usize] = Some(Topic {
            name: name.into(),
            generation,
            subscribers: Vec::new(),
            back: Vec::new(),
        });
        self.ids.insert(name.into(), index);
        index
    }

    /// Unsubscribes `conn` from `name`. `Some(last)` when it was subscribed, with `last` true
    /// when the topic lost its last local subscriber.
    pub fn unsubscribe(&mut self, conn: ConnId, name: &str) -> Option<bool> {
        let index = *self.ids.get(name)?;
        let mine = self.by_conn.get_mut(&conn)?;
        let slot = mine.iter().position(|h| h.topic == index)?;
        let held = mine.swap_remove(slot);
        // The entry moved into `slot` must tell its topic where it now is.
        if let Some(moved) = mine.get(slot)
            && let Some(Some(topic)) = self.topics.get_mut(moved.topic as usize)
            && let Some(back) = topic.back.get_mut(moved.at as usize)
        {
            *back = slot as u32;
        }
        if mine.is_empty() {
            self.by_conn.remove(&conn);
        }
        Some(self.detach(held))
    }

    /// Removes every subscription of `conn`; calls `on_last(name)` for each topic that lost its
    /// last local subscriber. Returns how many subscriptions were removed.
    pub fn remove_conn(&mut self, conn: ConnId, mut on_last: impl FnMut(&str)) -> usize {
        let Some(mine) = self.by_conn.remove(&conn) else {
            return 0;
        };
        for &held in &mine {
            let name = self
                .topics
                .get(held.topic as usize)
                .and_then(|t| t.as_ref())
                .map(|t| t.name.clone());
            if self.detach(held)
                && let Some(name) = name
            {
                on_last(&name);
            }
        }
        mine.len()
    }

    /// Takes a subscription off its topic (the connection's side is already updated); frees the
    /// topic when it was the last subscriber.
    fn detach(&mut self, held: Held) -> bool {
        let index = held.topic;
        let Some(slot) = self.topics.get_mut(index as usize) else {
            return false;
        };
        let Some(topic) = slot.as_mut() else {
            return false;
        };
        let at = held.at as usize;
        if at < topic.subscribers.len() {
            topic.subscribers.swap_remove(at);
            topic.back.swap_remove(at);
            self.subscriptions -= 1;
            // The subscriber moved into `at` must learn its new place.
            if let (Some(moved), Some(&back)) = (topic.subscribers.get(at), topic.back.get(at))
                && let Some(h) = self
                    .by_conn
                    .get_mut(moved)
                    .and_then(|list| list.get_mut(back as usize))
            {
                h.at = held.at;
            }
        }
        if !topic.subscribers.is_empty() {
            return false;
        }
        if let Some(topic) = slot.take() {
            self.ids.remove(&topic.name);
        }
        self.generations[index as usize] = self.generations[index as usize].wrapping_add(1);
        self.free.push(index);
        true
    }

    /// The key of topic `name` if it has local subscribers.
    pub fn key(&self, name: &str) -> Option<TopicKey> {
        let index = *self.ids.get(name)?;
        let topic = self.topics.get(index as usize)?.as_ref()?;
        Some(TopicKey {
            index,
            generation: topic.generation,
        })
    }

    /// The local subscribers of the topic under `key` (none if the topic has ended since).
    pub fn subscribers(&self, key: TopicKey) -> &[ConnId] {
        match self.topics.get(key.index as usize) {
            Some(Some(topic)) if topic.generation == key.generation => &topic.subscribers,
            _ => &[],
        }
    }

    /// Topics with at least one local subscriber.
    pub fn topic_count(&self) -> usize {
        self.ids.len()
    }

    /// Subscriptions held by local connections.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    /// Connections holding at least one subscription.
    pub fn subscriber_count(&self) -> usize {
        self.by_conn.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Token;

    impl TopicTable {
        /// Both sides point at each other and the counts agree.
        fn check(&self) {
            let mut held = 0;
            for (conn, list) in &self.by_conn {
                assert!(!list.is_empty(), "no empty connection entries");
                for (slot, h) in list.iter().enumerate() {
                    let topic = self.topics[h.topic as usize].as_ref().expect("live topic");
                    assert_eq!(topic.subscribers[h.at as usize], *conn);
                    assert_eq!(topic.back[h.at as usize] as usize, slot);
                    held += 1;
                }
            }
            let listed: usize = self
                .topics
                .iter()
                .flatten()
                .map(|t| t.subscribers.len())
                .sum();
            assert_eq!((held, listed), (self.subscriptions, self.subscriptions));
            for topic in self.topics.iter().flatten() {
                assert_eq!(topic.subscribers.len(), topic.back.len());
                assert!(!topic.subscribers.is_empty(), "empty topics are freed");
            }
        }
    }

    #[test]
    fn removal_keeps_both_sides_in_step() {
        // A deterministic pseudo-random sweep of subscribes, unsubscribes and disconnects.
        let mut t = TopicTable::default();
        let mut x: u32 = 12345;
        let mut next = |n: u32| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x % n
        };
        for step in 0..20_000 {
            let c = conn(next(40));
            let name = format!("t{}", next(12));
            match next(10) {
                0..=5 => {
                    let _ = t.subscribe(c, &name, 8);
                }
                6..=8 => {
                    t.unsubscribe(c, &name);
                }
                _ => {
                    t.remove_conn(c, |_| {});
                }
            }
            if step % 97 == 0 {
                t.check();
            }
        }
        t.check();
        for i in 0..40 {
            t.remove_conn(conn(i), |_| {});
        }
        t.check();
        assert_eq!((t.topic_count(), t.subscription_count()), (0, 0));
    }

    #[test]
    fn removing_one_of_many_subscribers_keeps_the_others() {
        let mut t = TopicTable::default();
        for i in 0..1000 {
            t.subscribe(conn(i), "big", 4).expect("subscribe");
            t.subscribe(conn(i), "other", 4).expect("subscribe");
        }
        for i in (0..1000).step_by(3) {
            assert_eq!(t.unsubscribe(conn(i), "big"), Some(false));
        }
        for i in (1..1000).step_by(3) {
            t.remove_conn(conn(i), |_| panic!("topics keep subscribers"));
        }
        t.check();
        let big = t.key("big").expect("big");
        let mut left: Vec<u32> = t.subscribers(big).iter().map(|c| c.index).collect();
        left.sort_unstable();
        let want: Vec<u32> = (2..1000).step_by(3).collect();
        assert_eq!(left, want);
    }

    fn conn(index: u32) -> ConnId {
        Token {
            index,
            generation: 0,
        }
    }

    #[test]
    fn subscribe_unsubscribe_and_disconnect_leave_nothing_behind() {
        let mut t = TopicTable::default();
        assert_eq!(
            t.subscribe(conn(1), "a", 10),
            Ok(Subscribed {
                new: true,
                first: true
            })
        );
        assert_eq!(
            t.subscribe(conn(2), "a", 10),
            Ok(Subscribed {
                new: true,
                first: false
            })
        );
        assert_eq!(
            t.subscribe(conn(2), "a", 10),
            Ok(Subscribed {
                new: false,
                first: false
            })
        );
        assert_eq!(
            t.subscribe(conn(2), "b", 10),
            Ok(Subscribed {
                new: true,
                first: true
            })
        );
        let a = t.key("a").expect("topic a");
        assert_eq!(t.subscribers(a), &[conn(1), conn(2)]);
        assert_eq!(
            (
                t.topic_count(),
                t.subscription_count(),
                t.subscriber_count()
            ),
            (2, 3, 2)
        );

        assert_eq!(t.unsubscribe(conn(1), "a"), Some(false));
        assert_eq!(t.unsubscribe(conn(1), "a"), None, "not subscribed any more");
        assert_eq!(t.unsubscribe(conn(9), "a"), None);
        let mut last = Vec::new();
        assert_eq!(t.remove_conn(conn(2), |name| last.push(name.to_owned())), 2);
        last.sort();
        assert_eq!(last, ["a", "b"]);
        assert_eq!(
            (
                t.topic_count(),
                t.subscription_count(),
                t.subscriber_count()
            ),
            (0, 0, 0)
        );
        assert!(t.subscribers(a).is_empty(), "the old key reaches nothing");
        assert_eq!(t.remove_conn(conn(2), |_| panic!("nothing left")), 0);
    }

    #[test]
    fn a_stale_key_never_reaches_a_reused_slot() {
        let mut t = TopicTable::default();
        t.subscribe(conn(1), "old", 10).expect("subscribe");
        let old = t.key("old").expect("key");
        assert_eq!(t.unsubscribe(conn(1), "old"), Some(true));
        t.subscribe(conn(2), "new", 10).expect("subscribe");
        let new = t.key("new").expect("key");
        assert_eq!(new.index, old.index, "slot reused");
        assert!(t.subscribers(old).is_empty());
        assert_eq!(t.subscribers(new), &[conn(2)]);
    }

    #[test]
    fn the_subscription_limit_is_per_connection() {
        let mut t = TopicTable::default();
        for i in 0..3 {
            t.subscribe(conn(1), &format!("t{i}"), 3)
                .expect("under the limit");
        }
        assert_eq!(t.subscribe(conn(1), "t3", 3), Err(SubscribeError::TooMany));
        assert_eq!(
            t.subscribe(conn(1), "t0", 3),
            Ok(Subscribed {
                new: false,
                first: false
            })
        );
        assert!(
            t.subscribe(conn(2), "t3", 3).is_ok(),
            "another connection has its own budget"
        );
        assert_eq!(t.subscribe(conn(3), "x", 0), Err(SubscribeError::TooMany));
        assert_eq!(
            t.subscriber_count(),
            2,
            "a refused connection leaves no entry"
        );
    }
}
