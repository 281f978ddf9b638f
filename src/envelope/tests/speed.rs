//! Speed measurements (ignored by default): `cargo test --release -- --ignored --nocapture`.

use super::*;

/// A typical ~110-byte PUBLISH, for the speed measurement.
const TYPICAL: &str = r#"{"type":"PUBLISH","payload":{"topic":"room:42","data":{"text":"hello world","n":17}},"meta":{"correlationId":"c-17"}}"#;

/// Best of 5 batches (the machine is shared, so the minimum is the least noisy figure), in ns.
fn time_per_iter(iters: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        for _ in 0..iters / 5 {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / f64::from(iters / 5));
    }
    best
}

/// `cargo test --release -- --ignored --nocapture parse_speed`
#[test]
#[ignore = "speed measurement; run in release mode"]
fn parse_speed() {
    let mut scratch = Scratch::new();
    let msg = std::hint::black_box(TYPICAL.as_bytes());
    let ns = time_per_iter(2_000_000, || {
        let env = parse(std::hint::black_box(msg), &mut scratch).expect("valid");
        std::hint::black_box(env);
    });
    println!("typical PUBLISH ({} bytes): {ns:.1} ns/parse", msg.len());
    let (mut input, mut retry) = (Vec::new(), Vec::new());
    let mut buffers = simd_json::Buffers::with_max_depth(0, MAX_DEPTH);
    let mut tape = simd_json::Tape::null();
    let ns = time_per_iter(2_000_000, || {
        let mut t = std::mem::replace(&mut tape, simd_json::Tape(Vec::new())).reset();
        let r = json::load(
            std::hint::black_box(msg),
            &mut input,
            &mut retry,
            &mut buffers,
            &mut t,
        );
        std::hint::black_box(r).expect("valid");
        tape = t.reset();
    });
    println!("  of which simd-json (copy, validate, tape): {ns:.1} ns");

    // The span step alone, on the same message.
    let mut buffers = simd_json::Buffers::default();
    let mut copy = msg.to_vec();
    let mut tape = simd_json::Tape::null();
    simd_json::fill_tape(&mut copy, &mut buffers, &mut tape).expect("valid");
    let s = buffers.structural_indexes().to_vec();
    let ns = time_per_iter(10_000_000, || {
        std::hint::black_box(span::member_span(std::hint::black_box(msg), &s, &[1, 1]));
    });
    println!("  locating data: {ns:.1} ns");

    // 1 MiB data strings (plain, and with an escape every 4 bytes): structural walk vs a byte
    // scan for the closing quote.
    for (name, body) in [("plain", "abcd"), ("escaped", "ab\\\"")] {
        let big = format!(
            r#"{{"type":"PUBLISH","payload":{{"topic":"t","data":"{}"}}}}"#,
            body.repeat(1 << 18)
        );
        let big = big.as_bytes();
        let ns = time_per_iter(50, || {
            std::hint::black_box(parse(std::hint::black_box(big), &mut scratch).expect("valid"));
        });
        println!("1 MiB {name} data string: {:.1} us/parse", ns / 1e3);
        let mut copy = big.to_vec();
        let mut tape = simd_json::Tape::null();
        simd_json::fill_tape(&mut copy, &mut buffers, &mut tape).expect("valid");
        let s = buffers.structural_indexes().to_vec();
        let ns = time_per_iter(1_000, || {
            std::hint::black_box(span::member_span(std::hint::black_box(big), &s, &[1, 1]));
        });
        println!("  locating data by structurals: {ns:.1} ns");
        let open = span::member_span(big, &s, &[1, 1]).map_or(0, |r| r.start);
        let ns = time_per_iter(50, || {
            std::hint::black_box(scan_string_end(std::hint::black_box(big), open));
        });
        println!(
            "  byte scan for the end of the string instead: {:.1} us",
            ns / 1e3
        );
    }
}

/// The byte-scanning alternative: end of the JSON string whose opening quote is at `open`.
fn scan_string_end(msg: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    while let Some(&b) = msg.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}
