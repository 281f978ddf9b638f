//! A server that speaks just enough RESP3 to look like a healthy Redis (HELLO, SUBSCRIBE and
//! PUBLISH are answered as Redis answers them, PING gets PONG) but never delivers a publication:
//! the failure a self-publish probe exists to catch.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The running fake; stops accepting when dropped.
pub struct SilentRedis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Connections accepted so far.
    pub connections: Arc<AtomicU64>,
    /// PUBLISH/SPUBLISH commands answered.
    pub publishes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl SilentRedis {
    /// Starts listening on a free port.
    pub fn start() -> SilentRedis {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let connections = Arc::new(AtomicU64::new(0));
        let publishes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, p, s) = (connections.clone(), publishes.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        c.fetch_add(1, Ordering::Relaxed);
                        let p = p.clone();
                        std::thread::spawn(move || serve(stream, &p));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        SilentRedis {
            port,
            connections,
            publishes,
            stop,
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for SilentRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn bulk(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

/// One command: an array of bulk strings. `None` at end of stream or on anything else.
fn read_command(r: &mut impl BufRead) -> Option<Vec<Vec<u8>>> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0u8; len + 2];
        r.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(arg);
    }
    Some(args)
}

fn serve(stream: TcpStream, publishes: &AtomicU64) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(args) = read_command(&mut reader) {
        let name = args
            .first()
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        let mut out = Vec::new();
        match name.as_slice() {
            b"HELLO" => {
                out.extend_from_slice(b"%3\r\n");
                for (k, v) in [
                    ("server", "redis"),
                    ("version", "7.0.0"),
                    ("mode", "standalone"),
                ] {
                    bulk(&mut out, k.as_bytes());
                    bulk(&mut out, v.as_bytes());
                }
            }
            b"SUBSCRIBE" | b"SSUBSCRIBE" | b"UNSUBSCRIBE" | b"SUNSUBSCRIBE" => {
                for channel in &args[1..] {
                    out.extend_from_slice(b">3\r\n");
                    bulk(&mut out, &name.to_ascii_lowercase());
                    bulk(&mut out, channel);
                    out.extend_from_slice(b":1\r\n");
                }
            }
            b"PUBLISH" | b"SPUBLISH" => {
                publishes.fetch_add(1, Ordering::Relaxed);
                out.extend_from_slice(b":1\r\n");
            }
            b"PING" => out.extend_from_slice(b"+PONG\r\n"),
            _ => out.extend_from_slice(b"+OK\r\n"),
        }
        if writer.write_all(&out).is_err() {
            return;
        }
    }
}
