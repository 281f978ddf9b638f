//! Offers as browsers, libraries and hostile peers write them.

use super::{Agreed, Malformed, negotiate};

fn one(header: &str) -> Result<Option<Agreed>, Malformed> {
    negotiate([header.as_bytes()])
}

const PLAIN: Option<Agreed> = Some(Agreed {
    server_max_window_bits: None,
});

fn narrow(bits: u8) -> Option<Agreed> {
    Some(Agreed {
        server_max_window_bits: Some(bits),
    })
}

#[test]
fn browser_offers_are_accepted() {
    // Chrome, Firefox and Safari all send this.
    assert_eq!(one("permessage-deflate; client_max_window_bits"), Ok(PLAIN));
    assert_eq!(one("permessage-deflate"), Ok(PLAIN));
    assert_eq!(one("PerMessage-Deflate;Client_Max_Window_Bits"), Ok(PLAIN));
    // Python websockets' default offer.
    assert_eq!(
        one("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
        Ok(narrow(12))
    );
}

#[test]
fn context_takeover_requests_get_the_no_takeover_answer() {
    let agreed = one("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    agreed.write_header(&mut out);
    assert_eq!(
        out,
        b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
          client_no_context_takeover\r\n"
    );
    // An offer that says nothing about takeover gets the same answer.
    let mut plain = Vec::new();
    one("permessage-deflate")
        .unwrap()
        .unwrap()
        .write_header(&mut plain);
    assert_eq!(plain, out);
}

#[test]
fn window_bits_are_honoured_and_answered() {
    assert_eq!(
        one("permessage-deflate; server_max_window_bits=9"),
        Ok(narrow(9))
    );
    assert_eq!(
        one("permessage-deflate; server_max_window_bits=8"),
        Ok(narrow(8))
    );
    assert_eq!(
        one("permessage-deflate; server_max_window_bits=15"),
        Ok(narrow(15))
    );
    assert_eq!(
        one("permessage-deflate; server_max_window_bits=\"10\""),
        Ok(narrow(10))
    );
    assert_eq!(
        one("permessage-deflate; client_max_window_bits=8"),
        Ok(PLAIN)
    );
    assert!(narrow(9).unwrap().narrow());
    assert!(!narrow(15).unwrap().narrow());
    assert!(!PLAIN.unwrap().narrow());
    let mut out = Vec::new();
    narrow(9).unwrap().write_header(&mut out);
    assert!(out.ends_with(b"client_no_context_takeover; server_max_window_bits=9\r\n"));
    out.clear();
    narrow(12).unwrap().write_header(&mut out);
    assert!(out.ends_with(b"; server_max_window_bits=12\r\n"));
}

#[test]
fn the_first_acceptable_offer_wins() {
    // Autobahn 13.7: three offers, the first acceptable.
    assert_eq!(
        one(
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=9, \
             permessage-deflate; client_no_context_takeover, permessage-deflate"
        ),
        Ok(narrow(9))
    );
    // Declined offers are skipped: bad value, duplicate, unknown parameter, value where none is
    // allowed, missing value.
    for bad in [
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=09",
        "permessage-deflate; server_max_window_bits=100000",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=1a",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; x-unknown",
        "permessage-deflate; server_no_context_takeover=1",
    ] {
        assert_eq!(one(bad), Ok(None), "{bad}");
        assert_eq!(
            one(&format!(
                "{bad}, permessage-deflate; server_max_window_bits=11"
            )),
            Ok(narrow(11)),
            "{bad}"
        );
    }
    // Other extensions are skipped; offers may span several headers.
    assert_eq!(one("x-webkit-deflate-frame"), Ok(None));
    assert_eq!(
        negotiate([
            b"foo; a=1, bar".as_slice(),
            b"permessage-deflate".as_slice()
        ]),
        Ok(PLAIN)
    );
    assert_eq!(
        negotiate([
            b"permessage-deflate; x".as_slice(),
            b"permessage-deflate; server_max_window_bits=10".as_slice()
        ]),
        Ok(narrow(10))
    );
}

#[test]
fn malformed_headers_are_refused() {
    for bad in [
        "",
        "   ",
        ",",
        "permessage-deflate;",
        "permessage-deflate; ;",
        "permessage-deflate; =1",
        "permessage-deflate; a=",
        "permessage-deflate; a=\"\"",
        "permessage-deflate; a=\"1",
        "permessage-deflate; a=\"1 2\"",
        "permessage-deflate; a=\"x,y\"",
        "permessage-deflate; a=b c",
        "permessage-deflate x",
        "permessage deflate",
        "permessage-deflate; a=@",
        "per\u{e9}message-deflate",
        "\"permessage-deflate\"",
        "permessage-deflate; a; b; c; d; e; f; g; h; i; j; k; l; m; n; o; p; q",
    ] {
        assert!(one(bad).is_err(), "{bad:?} was accepted");
    }
    // One malformed header among good ones spoils the request.
    assert!(negotiate([b"permessage-deflate".as_slice(), b";".as_slice()]).is_err());
}

#[test]
fn list_syntax_is_read_leniently_where_the_rfcs_allow() {
    assert_eq!(one(" , permessage-deflate ,, "), Ok(PLAIN));
    assert_eq!(
        one("permessage-deflate\t;\tclient_max_window_bits = 10"),
        Ok(PLAIN)
    );
    assert_eq!(
        one("permessage-deflate; server_max_window_bits=\"1\\2\""),
        Ok(narrow(12))
    );
    // A quoted value whose content is a token is fine for unknown extensions too.
    assert_eq!(one("foo; bar=\"baz\", permessage-deflate"), Ok(PLAIN));
}
