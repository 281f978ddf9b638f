//! Inflating the server's compressed messages (`--compression`, RFC 7692): the server must have
//! answered `server_no_context_takeover`, so every message inflates on its own and one inflater
//! per thread serves every connection.

use std::cell::RefCell;

use flate2::{Decompress, FlushDecompress, Status};

/// The largest message inflated (as the frame readers' own limit).
const MAX_INFLATED: usize = 64 << 20;

thread_local! {
    static INFLATER: RefCell<(Decompress, Vec<u8>)> =
        RefCell::new((Decompress::new(false), Vec::new()));
}

/// Inflates one compressed message (its frames' payloads joined, trailer stripped as sent) and
/// hands the result to `f`.
pub fn with_inflated<R>(payload: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
    INFLATER.with(|cell| {
        let (d, out) = &mut *cell.borrow_mut();
        d.reset(false);
        out.clear();
        out.reserve(payload.len() * 4 + 256);
        for input in [payload, &[0x00, 0x00, 0xff, 0xff][..]] {
            let mut rest = input;
            loop {
                let before = d.total_in();
                let status = d
                    .decompress_vec(rest, out, FlushDecompress::Sync)
                    .map_err(|e| format!("server sent invalid compressed data: {e}"))?;
                rest = &rest[(d.total_in() - before) as usize..];
                if status == Status::StreamEnd {
                    return Ok(f(out));
                }
                if rest.is_empty() && out.len() < out.capacity() {
                    break;
                }
                if out.len() > MAX_INFLATED {
                    return Err("compressed message inflates past 64 MiB".into());
                }
                out.reserve(out.capacity());
            }
        }
        Ok(f(out))
    })
}

#[cfg(test)]
mod tests {
    use flate2::{Compress, Compression, FlushCompress};

    #[test]
    fn inflates_sync_flushed_messages() {
        let data = b"{\"seq\":1,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}".repeat(50);
        let mut c = Compress::new(Compression::default(), false);
        let mut z = Vec::with_capacity(data.len());
        c.compress_vec(&data, &mut z, FlushCompress::Sync)
            .expect("compress");
        z.truncate(z.len() - 4);
        for _ in 0..2 {
            let n = super::with_inflated(&z, |out| {
                assert_eq!(out, data.as_slice());
                out.len()
            });
            assert_eq!(n, Ok(data.len()));
        }
        assert!(super::with_inflated(&[0xff, 0xff], |_| ()).is_err());
    }
}
