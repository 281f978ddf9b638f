//! `Sec-WebSocket-Extensions` negotiation (RFC 6455 §9.1, RFC 7692 §5 and §7): parsing every offer
//! of every such header, in order, and choosing the first `permessage-deflate` offer wsd accepts.
//!
//! The header grammar is checked in full, including the offers of other extensions: a header that
//! does not follow it is answered `400 Bad Request`. A `permessage-deflate` offer with an unknown,
//! repeated or out-of-range parameter is declined (RFC 7692 §5.1) and the next one is tried.
//!
//! wsd keeps no compression state between messages in either direction, so every answer carries
//! `server_no_context_takeover` and `client_no_context_takeover` (a client that offered
//! `permessage-deflate` must accept the latter, RFC 7692 §7.1.1.2).

use std::fmt;

/// The smallest LZ77 window (as a power of two) RFC 7692 allows.
pub const MIN_WINDOW_BITS: u8 = 8;
/// The largest LZ77 window (32 KiB), also the default.
pub const MAX_WINDOW_BITS: u8 = 15;

/// Why a `Sec-WebSocket-Extensions` header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The `permessage-deflate` parameters wsd agreed to for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The `server_max_window_bits` the client asked for (`None`: 15, not mentioned in the answer).
    /// The server's messages must then use an LZ77 window no larger than 2^N bytes.
    pub server_max_window_bits: Option<u8>,
}

impl Agreed {
    /// Whether the server must compress with a window smaller than the default 32 KiB.
    pub fn narrow(&self) -> bool {
        self.server_max_window_bits
            .is_some_and(|bits| bits < MAX_WINDOW_BITS)
    }

    /// Appends the `Sec-WebSocket-Extensions` response header line (with its CRLF).
    pub fn write_header(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
              client_no_context_takeover",
        );
        if let Some(bits) = self.server_max_window_bits {
            out.extend_from_slice(b"; server_max_window_bits=");
            if bits >= 10 {
                out.push(b'1');
            }
            out.push(b'0' + bits % 10);
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses the values of every `Sec-WebSocket-Extensions` header (in order) and returns the first
/// acceptable `permessage-deflate` offer, `None` if there is none, or why the headers are malformed.
pub fn negotiate<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<Agreed>, Malformed> {
    let mut chosen = None;
    for value in values {
        let mut p = Parser { s: value, pos: 0 };
        p.list(|name, params| {
            if chosen.is_none() && name.eq_ignore_ascii_case(b"permessage-deflate") {
                chosen = accept_deflate(params);
            }
        })?;
    }
    Ok(chosen)
}

/// One parameter of an offer: its name and, if it has one, its value (unquoted).
type Param<'a> = (&'a [u8], Option<Value<'a>>);

/// A parameter value: a token as written, or the content of a quoted string (escapes not yet
/// removed; the unescaped text is a token, so it has no quote or backslash of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Value<'a> {
    raw: &'a [u8],
    quoted: bool,
}

impl Value<'_> {
    /// The value with quoted-pair escapes removed, written into `buf`; `None` if longer.
    fn unescaped<'b>(&self, buf: &'b mut [u8; 4]) -> Option<&'b [u8]> {
        let mut n = 0;
        let mut escaped = false;
        for &b in self.raw {
            if self.quoted && b == b'\\' && !escaped {
                escaped = true;
                continue;
            }
            escaped = false;
            *buf.get_mut(n)? = b;
            n += 1;
        }
        buf.get(..n)
    }
}

/// The agreement for one `permessage-deflate` offer, or `None` to decline it (RFC 7692 §5.1, §7.1).
fn accept_deflate(params: &[Param<'_>]) -> Option<Agreed> {
    let mut seen = [false; 4];
    let mut agreed = Agreed {
        server_max_window_bits: None,
    };
    for (name, value) in params {
        let mut buf = [0u8; 4];
        let value = match value {
            Some(v) => Some(v.unescaped(&mut buf)?),
            None => None,
        };
        let index = [
            b"server_no_context_takeover".as_slice(),
            b"client_no_context_takeover",
            b"server_max_window_bits",
            b"client_max_window_bits",
        ]
        .iter()
        .position(|known| name.eq_ignore_ascii_case(known))?;
        if std::mem::replace(seen.get_mut(index)?, true) {
            return None; // a parameter given twice
        }
        match (index, value) {
            // The no-context-takeover parameters take no value.
            (0 | 1, None) => {}
            (2, Some(v)) => agreed.server_max_window_bits = Some(window_bits(v)?),
            // The client only says it can use a smaller window if asked (wsd does not ask); a
            // value is its own upper bound, which wsd's inflater (32 KiB window) accepts anyway.
            (3, None) => {}
            (3, Some(v)) => {
                window_bits(v)?;
            }
            _ => return None,
        }
    }
    Some(agreed)
}

/// A window-bits value: an integer 8-15 written without leading zeros.
fn window_bits(v: &[u8]) -> Option<u8> {
    let bits = match v {
        [d] if d.is_ascii_digit() => *d - b'0',
        [b'1', d] if d.is_ascii_digit() => 10 + (*d - b'0'),
        _ => return None,
    };
    (MIN_WINDOW_BITS..=MAX_WINDOW_BITS)
        .contains(&bits)
        .then_some(bits)
}

/// Whether `b` is a `tchar` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The most parameters one offer may carry; an offer with more is malformed (no extension has
/// that many, and the bound keeps the parser free of allocation).
const MAX_PARAMS: usize = 16;

/// A cursor over one header value.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| self.s.get(start..self.pos).unwrap_or_default())
    }

    /// A quoted string whose unescaped content is a token (RFC 6455 §9.1); the opening quote is
    /// at the cursor.
    fn quoted(&mut self) -> Result<&'a [u8], Malformed> {
        self.pos += 1;
        let start = self.pos;
        let mut empty = true;
        loop {
            match self.peek() {
                Some(b'"') => break,
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b) if is_tchar(b) => {}
                        _ => return Err(Malformed("extension parameter value is not a token")),
                    }
                }
                Some(b) if is_tchar(b) => {}
                Some(_) => return Err(Malformed("extension parameter value is not a token")),
                None => return Err(Malformed("unterminated quoted string")),
            }
            empty = false;
            self.pos += 1;
        }
        let raw = self.s.get(start..self.pos).unwrap_or_default();
        self.pos += 1;
        if empty {
            return Err(Malformed("empty extension parameter value"));
        }
        Ok(raw)
    }

    /// `extension-list = 1#extension`: calls `on_offer` with each extension and its parameters.
    /// Empty list elements (`a, , b`) are skipped, as RFC 9110 §5.6.1 asks of recipients.
    fn list(&mut self, mut on_offer: impl FnMut(&[u8], &[Param<'a>])) -> Result<(), Malformed> {
        let mut any = false;
        loop {
            self.skip_ows();
            match self.peek() {
                None => break,
                Some(b',') => {
                    self.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            let name = self
                .token()
                .ok_or(Malformed("extension name is not a token"))?;
            let mut params: [Param<'a>; MAX_PARAMS] = [(b"", None); MAX_PARAMS];
            let mut count = 0;
            loop {
                self.skip_ows();
                match self.peek() {
                    None | Some(b',') => break,
                    Some(b';') => self.pos += 1,
                    Some(_) => return Err(Malformed("expected ';' or ',' after an extension")),
                }
                self.skip_ows();
                let pname = self
                    .token()
                    .ok_or(Malformed("extension parameter name is not a token"))?;
                self.skip_ows();
                let value = if self.peek() == Some(b'=') {
                    self.pos += 1;
                    self.skip_ows();
                    Some(match self.peek() {
                        Some(b'"') => Value {
                            raw: self.quoted()?,
                            quoted: true,
                        },
                        _ => Value {
                            raw: self
                                .token()
                                .ok_or(Malformed("extension parameter value is not a token"))?,
                            quoted: false,
                        },
                    })
                } else {
                    None
                };
                let slot = params
                    .get_mut(count)
                    .ok_or(Malformed("too many extension parameters"))?;
                *slot = (pname, value);
                count += 1;
            }
            on_offer(name, params.get(..count).unwrap_or_default());
            any = true;
        }
        if any {
            Ok(())
        } else {
            Err(Malformed("empty Sec-WebSocket-Extensions header"))
        }
    }
}

#[cfg(test)]
mod tests;
