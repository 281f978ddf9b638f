//! A worker's topic table: topic → local subscribers and connection → its topics, kept in step
//! and emptied completely on unsubscribe and disconnect.

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
    subscribers: Vec<ConnId>,
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
    by_conn: HashMap<ConnId, Vec<u32>>,
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
            && mine.contains(&index)
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
        topic.subscribers.push(conn);
        self.by_conn.entry(conn).or_default().push(index);
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
        });
        self.ids.insert(name.into(), index);
        index
    }

    /// Unsubscribes `conn` from `name`. `Some(last)` when it was subscribed, with `last` true
    /// when the topic lost its last local subscriber.
    pub fn unsubscribe(&mut self, conn: ConnId, name: &str) -> Option<bool> {
        let index = *self.ids.get(name)?;
        let mine = self.by_conn.get_mut(&conn)?;
        let at = mine.iter().position(|&i| i == index)?;
        mine.swap_remove(at);
        if mine.is_empty() {
            self.by_conn.remove(&conn);
        }
        Some(self.detach(index, conn))
    }

    /// Removes every subscription of `conn`; calls `on_last(name)` for each topic that lost its
    /// last local subscriber. Returns how many subscriptions were removed.
    pub fn remove_conn(&mut self, conn: ConnId, mut on_last: impl FnMut(&str)) -> usize {
        let Some(mine) = self.by_conn.remove(&conn) else {
            return 0;
        };
        for &index in &mine {
            let name = self
                .topics
                .get(index as usize)
                .and_then(|t| t.as_ref())
                .map(|t| t.name.clone());
            if self.detach(index, conn)
                && let Some(name) = name
            {
                on_last(&name);
            }
        }
        mine.len()
    }

    /// Takes `conn` off topic `index`; frees the topic when it was the last subscriber.
    fn detach(&mut self, index: u32, conn: ConnId) -> bool {
        let Some(slot) = self.topics.get_mut(index as usize) else {
            return false;
        };
        let Some(topic) = slot.as_mut() else {
            return false;
        };
        if let Some(at) = topic.subscribers.iter().position(|&c| c == conn) {
            topic.subscribers.swap_remove(at);
            self.subscriptions -= 1;
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
