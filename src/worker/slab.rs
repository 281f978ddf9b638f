//! The worker's connection table: slots reused through a free list, keys checked by generation.

use crate::io::Token;
use crate::table::Chunked;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

// A slot of the worker's connection table: the connection and its generation (per-connection
// memory, docs/STYLE.md; 168 bytes before the out-queue's shared parts were boxed).
const _: () = assert!(size_of::<Slot<super::conn::Conn>>() <= 112);

/// A slab whose keys ([`Token`]s) carry the slot's generation, so a key kept past its
/// connection's end never reaches the connection that reuses the slot.
pub struct Slab<T> {
    /// Grows in chunks: a doubling `Vec` would leave its old copies resident (`table.rs`).
    slots: Chunked<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Chunked::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value` and returns its key.
    pub fn insert(&mut self, value: T) -> Token {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.value = Some(value);
            return Token {
                index,
                generation: slot.generation,
            };
        }
        let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            generation: 0,
            value: Some(value),
        });
        Token {
            index,
            generation: 0,
        }
    }

    /// The value under `token`, if it is still the one the token was issued for.
    pub fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        let slot = self.slots.get_mut(token.index as usize)?;
        if slot.generation != token.generation {
            return None;
        }
        slot.value.as_mut()
    }

    /// Removes the value; the slot's generation moves on so old tokens stop matching.
    pub fn remove(&mut self, token: Token) -> Option<T> {
        let slot = self.slots.get_mut(token.index as usize)?;
        if slot.generation != token.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(token.index);
        self.len -= 1;
        Some(value)
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The keys of every stored value.
    pub fn tokens(&self) -> Vec<Token> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, s)| Token {
                index: i as u32,
                generation: s.generation,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_tokens_do_not_reach_a_reused_slot() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert("b");
        assert_eq!(b.index, a.index, "slot reused");
        assert_ne!(b.generation, a.generation);
        assert!(slab.get_mut(a).is_none());
        assert!(slab.remove(a).is_none());
        assert_eq!(slab.get_mut(b), Some(&mut "b"));
        let c = slab.insert("c");
        assert_eq!(slab.tokens(), vec![b, c]);
        assert_eq!(slab.remove(b), Some("b"));
        assert_eq!(slab.remove(c), Some("c"));
        assert!(slab.is_empty());
    }
}
