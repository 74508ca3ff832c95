//! Id formats of the real API (`batch_`, `batch_req_`, `file-`, `req_`, `chatcmpl-`), drawn from a seeded RNG.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Generates ids shaped like OpenAI's.
#[derive(Debug)]
pub(crate) struct IdGen {
    rng: ChaCha8Rng,
}

impl IdGen {
    pub(crate) fn new(seed: u64) -> IdGen {
        IdGen {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from_digit(self.rng.random_range(0..16u32), 16).unwrap_or('0'))
            .collect()
    }

    /// 32 hex digits: the first 8 are `unix_secs` in hex and digits 13–16 are `8190`, as real ids.
    fn stamped_hex(&mut self, unix_secs: i64) -> String {
        let stamp = format!("{:08x}", (unix_secs.max(0) as u64) & 0xffff_ffff);
        format!("{stamp}{}8190{}", self.hex(4), self.hex(16))
    }

    /// `batch_` + 32 hex.
    pub(crate) fn batch(&mut self, unix_secs: i64) -> String {
        format!("batch_{}", self.stamped_hex(unix_secs))
    }

    /// `batch_req_` + 32 hex.
    pub(crate) fn batch_request(&mut self, unix_secs: i64) -> String {
        format!("batch_req_{}", self.stamped_hex(unix_secs))
    }

    /// `file-` + 22 base58 characters.
    pub(crate) fn file(&mut self) -> String {
        let tail: String = (0..22)
            .map(|_| BASE58[self.rng.random_range(0..BASE58.len())] as char)
            .collect();
        format!("file-{tail}")
    }

    /// `req_` + 32 hex, for the `x-request-id` header.
    pub(crate) fn header_request_id(&mut self) -> String {
        format!("req_{}", self.hex(32))
    }

    /// 32 hex with no prefix, for `response.request_id` inside output lines.
    pub(crate) fn line_request_id(&mut self) -> String {
        self.hex(32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_real_shapes() {
        let mut g = IdGen::new(1);
        let b = g.batch(0x6780bb2f);
        assert_eq!(b.len(), 6 + 32);
        assert!(b.starts_with("batch_6780bb2f"));
        assert_eq!(&b[6 + 12..6 + 16], "8190");
        let r = g.batch_request(1);
        assert!(r.starts_with("batch_req_00000001"));
        let f = g.file();
        assert_eq!(f.len(), 5 + 22);
        assert!(f[5..].bytes().all(|c| BASE58.contains(&c)));
        let h = g.header_request_id();
        assert_eq!(h.len(), 36);
        assert!(
            h[4..]
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(g.line_request_id().len(), 32);
    }
}
