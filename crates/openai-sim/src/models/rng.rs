//! Stable hashing and seeded randomness: every "random" choice a simulated model makes.
//!
//! `std`'s `DefaultHasher` may change between Rust releases, so answers would drift with the
//! toolchain; FNV-1a is fixed forever and fast enough for request bodies.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::Value;

/// FNV-1a over `parts`, each part followed by a separator so `("ab", "c") != ("a", "bc")`.
pub(crate) fn hash_parts(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // FNV's low bits mix poorly; a final avalanche (splitmix64) spreads them.
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash of `seed` and a JSON value's compact serialisation, leaving out `service_tier`: the
/// tier that carries a request changes how fast it is answered, not what the model writes, so
/// a flex, batch or standard call of one request gets one answer.
pub(crate) fn hash_json(seed: u64, value: &Value) -> u64 {
    let text = match value.as_object() {
        Some(obj) if obj.contains_key("service_tier") => {
            let mut obj = obj.clone();
            obj.remove("service_tier");
            Value::Object(obj).to_string()
        }
        _ => value.to_string(),
    };
    hash_parts(&[&seed.to_le_bytes(), text.as_bytes()])
}

/// A deterministic random stream for one decision, named by `purpose` so two decisions made
/// for the same request do not draw the same numbers.
#[derive(Debug, Clone)]
pub(crate) struct Dice(ChaCha8Rng);

impl Dice {
    /// The stream for `purpose` under the request hash `base`.
    pub(crate) fn new(base: u64, purpose: &str) -> Dice {
        let seed = hash_parts(&[&base.to_le_bytes(), purpose.as_bytes()]);
        Dice(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.0.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Approximately normal with mean 0 and standard deviation `sigma` (Irwin-Hall of 4).
    pub(crate) fn normal(&mut self, sigma: f64) -> f64 {
        let sum: f64 = (0..4).map(|_| self.unit()).sum();
        // The sum of 4 uniforms has mean 2 and variance 4/12.
        (sum - 2.0) * (3.0f64).sqrt() * sigma
    }

    /// One element of `items`, or `None` when it is empty.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len())])
        }
    }

    /// `items` in a random order (Fisher-Yates).
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// `len` characters drawn from `alphabet`.
    pub(crate) fn token(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }
}

/// Letters and digits, as in `chatcmpl-` ids.
pub(crate) const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Lowercase hex digits.
pub(crate) const HEX: &[u8] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_separated() {
        assert_eq!(hash_parts(&[b"abc"]), hash_parts(&[b"abc"]));
        assert_ne!(hash_parts(&[b"ab", b"c"]), hash_parts(&[b"a", b"bc"]));
        assert_ne!(hash_parts(&[b""]), hash_parts(&[b"", b""]));
    }

    #[test]
    fn dice_are_deterministic_per_purpose() {
        let mut x = Dice::new(7, "noise");
        let mut y = Dice::new(7, "noise");
        let mut z = Dice::new(7, "other");
        let xs: Vec<f64> = (0..8).map(|_| x.unit()).collect();
        let ys: Vec<f64> = (0..8).map(|_| y.unit()).collect();
        let zs: Vec<f64> = (0..8).map(|_| z.unit()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().all(|u| (0.0..1.0).contains(u)));
    }

    #[test]
    fn normal_has_roughly_the_asked_spread() {
        let mut d = Dice::new(1, "n");
        let xs: Vec<f64> = (0..4000).map(|_| d.normal(0.5)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.05, "sd {}", var.sqrt());
    }
}
