//! Topic names: validation rules and [`Topics`], the 1..=512 names of a (UN)SUBSCRIBE.

use std::fmt;

use super::ErrorKind;

/// Longest topic name, in bytes of UTF-8.
pub const MAX_TOPIC_LEN: usize = 256;

/// Most names in one `payload.topics` list.
pub const MAX_TOPICS: usize = 512;

/// Checks a topic name: 1 to [`MAX_TOPIC_LEN`] bytes, no control character (U+0000..=U+001F,
/// U+007F). Exact match is the only matching rule, so nothing else is special.
///
/// # Errors
/// [`ErrorKind::TopicEmpty`], [`ErrorKind::TopicTooLong`] or [`ErrorKind::TopicControlChar`].
pub fn validate_topic(topic: &str) -> Result<(), ErrorKind> {
    if topic.is_empty() {
        return Err(ErrorKind::TopicEmpty);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(ErrorKind::TopicTooLong);
    }
    // UTF-8 continuation and lead bytes are >= 0x80, so a byte test is exact.
    if topic.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(ErrorKind::TopicControlChar);
    }
    Ok(())
}

/// The topic names of a `SUBSCRIBE`/`UNSUBSCRIBE`: one for `{"topic": T}`, one or more (at most
/// [`MAX_TOPICS`], each validated, duplicates kept) for `{"topics": [...]}`. Never empty.
///
/// The names are unescaped copies held in the parser's [`Scratch`](super::Scratch).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Topics<'a> {
    /// All names back to back.
    buf: &'a str,
    /// End offset of each name in `buf`.
    ends: &'a [usize],
}

impl<'a> Topics<'a> {
    pub(crate) const fn new(buf: &'a str, ends: &'a [usize]) -> Self {
        Self { buf, ends }
    }

    /// How many names (1..=512 for a parsed request).
    #[must_use]
    pub const fn len(&self) -> usize {
        self.ends.len()
    }

    /// Always `false` for a parsed request.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`-th name.
    #[must_use]
    pub fn get(&self, i: usize) -> Option<&'a str> {
        let start = match i.checked_sub(1) {
            None => 0,
            Some(prev) => *self.ends.get(prev)?,
        };
        let end = *self.ends.get(i)?;
        self.buf.get(start..end)
    }

    /// The names in message order.
    #[must_use]
    pub fn iter(&self) -> TopicsIter<'a> {
        TopicsIter {
            topics: *self,
            next: 0,
        }
    }
}

impl fmt::Debug for Topics<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for Topics<'a> {
    type Item = &'a str;
    type IntoIter = TopicsIter<'a>;

    fn into_iter(self) -> TopicsIter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &Topics<'a> {
    type Item = &'a str;
    type IntoIter = TopicsIter<'a>;

    fn into_iter(self) -> TopicsIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Topics`].
#[derive(Clone, Debug)]
pub struct TopicsIter<'a> {
    topics: Topics<'a>,
    next: usize,
}

impl<'a> Iterator for TopicsIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let t = self.topics.get(self.next)?;
        self.next += 1;
        Some(t)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.topics.len().saturating_sub(self.next);
        (n, Some(n))
    }
}

impl ExactSizeIterator for TopicsIter<'_> {}

/// Builds [`Topics`] in the reusable scratch storage.
pub(crate) struct TopicsBuilder<'s> {
    buf: &'s mut String,
    ends: &'s mut Vec<usize>,
}

impl<'s> TopicsBuilder<'s> {
    /// Clears the storage (keeping its capacity).
    pub(crate) fn new(buf: &'s mut String, ends: &'s mut Vec<usize>) -> Self {
        buf.clear();
        ends.clear();
        Self { buf, ends }
    }

    /// Validates and appends one name.
    pub(crate) fn push(&mut self, topic: &str) -> Result<(), ErrorKind> {
        validate_topic(topic)?;
        self.buf.push_str(topic);
        self.ends.push(self.buf.len());
        Ok(())
    }

    pub(crate) fn finish(self) -> Topics<'s> {
        Topics::new(self.buf, self.ends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for t in ["a", "room:42", "é", "chat/🎉", "with space", "x\u{80}y"] {
            assert_eq!(validate_topic(t), Ok(()), "{t:?}");
        }
        assert_eq!(validate_topic(&"a".repeat(256)), Ok(()));
        assert_eq!(validate_topic(&"é".repeat(128)), Ok(())); // 256 bytes
    }

    #[test]
    fn invalid_names() {
        assert_eq!(validate_topic(""), Err(ErrorKind::TopicEmpty));
        assert_eq!(
            validate_topic(&"a".repeat(257)),
            Err(ErrorKind::TopicTooLong)
        );
        assert_eq!(
            validate_topic(&"é".repeat(129)),
            Err(ErrorKind::TopicTooLong)
        );
        for c in (0u8..0x20).chain([0x7f]) {
            let t = format!("a{}b", char::from(c));
            assert_eq!(
                validate_topic(&t),
                Err(ErrorKind::TopicControlChar),
                "{c:#x}"
            );
        }
    }

    #[test]
    fn builder_and_iteration() {
        let (mut buf, mut ends) = (String::from("junk"), vec![9]);
        let mut b = TopicsBuilder::new(&mut buf, &mut ends);
        b.push("a").unwrap();
        b.push("room:é").unwrap();
        b.push("a").unwrap();
        assert_eq!(b.push(""), Err(ErrorKind::TopicEmpty));
        let t = b.finish();
        assert_eq!(t.len(), 3);
        assert!(!t.is_empty());
        assert_eq!(t.iter().collect::<Vec<_>>(), ["a", "room:é", "a"]);
        assert_eq!(t.iter().len(), 3);
        assert_eq!(t.get(1), Some("room:é"));
        assert_eq!(t.get(3), None);
        assert_eq!(format!("{t:?}"), r#"["a", "room:é", "a"]"#);
        assert_eq!(t.into_iter().count(), 3);
    }
}
