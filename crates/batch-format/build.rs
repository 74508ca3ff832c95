//! Writes the token vocabularies (o200k_base, cl100k_base) as lookup tables that the crate
//! reads in place (`src/tokens/layout.rs`), taken from tiktoken-rs at compile time: building
//! tiktoken-rs's own tables costs a process 0.3 s before it counts a token, more than the
//! whole of a large file's validation.

use std::collections::HashSet;
use std::path::PathBuf;

#[path = "src/tokens/layout.rs"]
#[allow(dead_code, unreachable_pub, reason = "shared with the crate")]
mod layout;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/tokens/layout.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("cargo sets OUT_DIR")?);
    let encodings = [
        ("o200k_base", tiktoken_rs::o200k_base()?),
        ("cl100k_base", tiktoken_rs::cl100k_base()?),
    ];
    for (name, bpe) in encodings {
        let special: HashSet<u32> = bpe
            .special_tokens()
            .into_iter()
            .flat_map(|s| bpe.encode_with_special_tokens(s))
            .collect();
        let top = special.iter().copied().max().unwrap_or(0);
        // Every ordinary rank below the highest special one; a missing rank has no bytes.
        let tokens: Vec<Vec<u8>> = (0..top)
            .map(|r| {
                if special.contains(&r) {
                    Vec::new()
                } else {
                    bpe.decode_bytes(&[r]).unwrap_or_default()
                }
            })
            .collect();
        std::fs::write(out.join(format!("{name}.vocab")), table(&tokens)?)?;
    }
    Ok(())
}

/// The table of `tokens` (indexed by rank) in the layout `layout.rs` describes.
fn table(tokens: &[Vec<u8>]) -> Result<Vec<u8>, std::num::TryFromIntError> {
    let present = tokens.iter().filter(|t| !t.is_empty()).count();
    // At most 3/8 full: a miss ends within a probe or two.
    let slots = (present * 8 / 3).next_power_of_two();
    let blob_len: usize = tokens.iter().map(Vec::len).sum();
    let mut words: Vec<u32> = vec![
        u32::try_from(tokens.len())?,
        u32::try_from(slots)?,
        u32::try_from(blob_len)?,
    ];
    let mut offset = 0u32;
    words.push(0);
    for t in tokens {
        offset += u32::try_from(t.len())?;
        words.push(offset);
    }
    let mut table = vec![[0u32; 2]; slots];
    for (rank, t) in tokens.iter().enumerate().filter(|(_, t)| !t.is_empty()) {
        let h = layout::hash(t);
        let mut i = (h as usize) & (slots - 1);
        while table[i][1] != 0 {
            i = (i + 1) & (slots - 1);
        }
        table[i] = [layout::fingerprint(h), u32::try_from(rank + 1)?];
    }
    words.extend(table.iter().flatten());
    let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    for t in tokens {
        bytes.extend_from_slice(t);
    }
    Ok(bytes)
}
