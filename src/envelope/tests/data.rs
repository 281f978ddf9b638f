//! `data` is the exact bytes the publisher sent, for every JSON type, random values included.

use super::*;

/// `data` is returned as the exact bytes of the message, for every kind of JSON value.
#[test]
fn data_is_exact_bytes_for_every_json_type() {
    let values = [
        "{\"a\": 1 }",
        "{ \"b\" :\t[ 1 ,2\n] , \"c\":{} }",
        "{}",
        "[ 1, \"two\", [ ], {\"x\" : null} ]",
        "[]",
        r#""\u00e9\n\"""#,
        r#""é \\ \/ \t \ud83c\udf89 } ] , :""#,
        "\"\"",
        "1e400",
        "-1e400",
        "123456789012345678901234567890",
        "0",
        "-0.0e-0",
        "3.141592653589793",
        "true",
        "false",
        "null",
    ];
    for v in values {
        for (before, after) in [("", ""), (" ", " "), ("\n\t", "\r\n "), ("  ", "")] {
            let m = format!(
                r#"{{"type":"PUBLISH","payload":{{"topic":"t","data":{before}{v}{after}}}}}"#
            );
            assert_eq!(data_of(&m), v.as_bytes(), "{m}");
            let m = format!(
                r#"{{ "payload" : {{ "data" :{before}{v}{after}, "topic":"t" , "excludeSelf" : true }} ,"type":"PUBLISH"}}"#
            );
            assert_eq!(data_of(&m), v.as_bytes(), "{m}");
        }
    }
}

#[test]
fn data_may_nest_to_the_depth_limit() {
    for (n, fits) in [(62, true), (63, false)] {
        let v = format!("{}{}", "[".repeat(n), "]".repeat(n));
        let m = format!(r#"{{"type":"PUBLISH","payload":{{"topic":"t","data":{v}}}}}"#);
        if fits {
            assert_eq!(data_of(&m), v.as_bytes());
        } else {
            assert_eq!(err(&m).kind(), ErrorKind::TooDeep);
        }
    }
}

/// Small deterministic PRNG (xorshift64*), so the property test needs no dependency.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn pick<'s>(&mut self, v: &[&'s str]) -> &'s str {
        v[self.below(v.len())]
    }

    fn ws(&mut self) -> &'static str {
        self.pick(&["", "", " ", "\n", "\t", "\r\n ", "  "])
    }

    fn value(&mut self, depth: usize) -> String {
        const SCALARS: [&str; 12] = [
            "0",
            "-1",
            "2.5e-3",
            "1e400",
            "-123456789012345678901234567890",
            "true",
            "false",
            "null",
            "\"\"",
            "\"x\"",
            r#""\"}],:{[\\""#,
            r#""\u00e9\n\ud83c\udf89 ""#,
        ];
        match if depth >= 4 { 0 } else { self.below(4) } {
            0 | 1 => self.pick(&SCALARS).to_owned(),
            2 => {
                let items: Vec<String> =
                    (0..self.below(4)).map(|_| self.value(depth + 1)).collect();
                let sep = format!("{},{}", self.ws(), self.ws());
                format!("[{}{}{}]", self.ws(), items.join(&sep), self.ws())
            }
            _ => {
                let items: Vec<String> = (0..self.below(4))
                    .map(|i| {
                        format!(
                            "\"k{i}\"{}:{}{}",
                            self.ws(),
                            self.ws(),
                            self.value(depth + 1)
                        )
                    })
                    .collect();
                let sep = format!("{},{}", self.ws(), self.ws());
                format!("{{{}{}{}}}", self.ws(), items.join(&sep), self.ws())
            }
        }
    }
}

/// Random `data` values with random whitespace, among random other members in random order.
#[test]
fn data_is_exact_bytes_property() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut scratch = Scratch::new();
    for _ in 0..3_000 {
        let data = rng.value(0);
        let mut members = vec![
            r#""topic":"t""#.to_owned(),
            format!("\"data\"{}:{}{}", rng.ws(), rng.ws(), data),
            format!("\"other\":{}", rng.value(1)),
        ];
        if rng.below(2) == 0 {
            members.push(r#""excludeSelf":false"#.to_owned());
        }
        let (a, b) = (rng.below(members.len()), rng.below(members.len()));
        members.swap(a, b);
        let payload = members.join(&format!("{},{}", rng.ws(), rng.ws()));
        let mut top = [
            r#""type":"PUBLISH""#.to_owned(),
            format!(
                "\"payload\"{}:{}{{{}{payload}{}}}",
                rng.ws(),
                rng.ws(),
                rng.ws(),
                rng.ws()
            ),
            format!("\"x\":{}", rng.value(1)),
            r#""meta":{"correlationId":"c"}"#.to_owned(),
        ];
        let (a, b) = (rng.below(top.len()), rng.below(top.len()));
        top.swap(a, b);
        let msg = format!("{}{{{}{}}}{}", rng.ws(), top.join(","), rng.ws(), rng.ws());
        match parse_with(&mut scratch, msg.as_bytes()) {
            Ok((Got::Pub(_, got, false), Some(_))) => assert_eq!(got, data.as_bytes(), "{msg}"),
            other => panic!("{msg}: {other:?}"),
        }
    }
}

#[test]
fn one_mib_data_string() {
    let body: String = "a\\\"é".chars().cycle().take(1 << 20).collect();
    let data = format!("\"{body}\"");
    let m = format!(r#"{{"type":"PUBLISH","payload":{{"topic":"big","data":{data}}}}}"#);
    assert_eq!(data_of(&m), data.as_bytes());
}
