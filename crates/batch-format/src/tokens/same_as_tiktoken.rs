//! The counts are tiktoken's: the hand-cut ASCII pieces, the regex for the rest and the merge
//! over the in-place tables give exactly `CoreBPE::count_ordinary`, on generated text full of
//! the patterns' edge cases and on real prose and code.

use std::sync::OnceLock;

use proptest::prelude::*;
use tiktoken_rs::CoreBPE;

use super::{Encoding, TokenEstimator};

/// tiktoken-rs's own BPE for the estimator's encoding, built once per test process.
pub(super) fn tiktoken(est: TokenEstimator) -> &'static CoreBPE {
    static O200K: OnceLock<CoreBPE> = OnceLock::new();
    static CL100K: OnceLock<CoreBPE> = OnceLock::new();
    match est.encoding {
        Encoding::O200kBase => O200K.get_or_init(|| tiktoken_rs::o200k_base().unwrap()),
        Encoding::Cl100kBase => CL100K.get_or_init(|| tiktoken_rs::cl100k_base().unwrap()),
    }
}

fn both() -> [TokenEstimator; 2] {
    [
        TokenEstimator::for_model("gpt-4o-mini"),
        TokenEstimator::for_model("gpt-4-turbo"),
    ]
}

fn assert_same(text: &str) {
    for est in both() {
        let exact = tiktoken(est).count_ordinary(text) as u64;
        assert_eq!(
            est.encoding.count(text),
            exact,
            "{}: {text:?}",
            est.encoding_name()
        );
    }
}

/// Pieces that meet the patterns' edge cases: case runs, contractions in any case, digit runs,
/// marks before words and newlines, every ASCII whitespace, control bytes, and a few
/// non-ASCII letters, marks and symbols (those texts take the regex).
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z]{1,12}",
        2 => "[A-Z][a-z]{0,8}",
        1 => "[A-Z]{1,6}[a-z]{0,3}",
        2 => Just(" ".to_owned()),
        1 => "[ \t\n\r\u{0b}\u{0c}]{1,5}",
        1 => prop::sample::select(vec![
            "'s", "'S", "'t", "'re", "'RE", "'Ve", "'m", "'ll", "'LL", "'d", "'x", "'",
        ])
        .prop_map(str::to_owned),
        1 => "[0-9]{1,7}",
        2 => r#"[!-/:-@\[-`{-~]{1,4}"#,
        1 => "[\u{0}-\u{8}\u{e}-\u{1f}\u{7f}]",
        1 => prop::sample::select(vec![
            "é", "Ünïcödé", "日本語", "naïve", "\u{301}", "😀", "\u{a0}", "\u{2028}", "١٢٣",
            "Ⅻ", "ǅ", "ʰ",
        ])
        .prop_map(str::to_owned),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn generated_text_counts_as_tiktoken_counts(parts in prop::collection::vec(fragment(), 0..40)) {
        assert_same(&parts.concat());
    }

    #[test]
    fn any_ascii_counts_as_tiktoken_counts(text in "[\u{0}-\u{7f}]{0,200}") {
        assert_same(&text);
    }
}

#[test]
fn prose_code_and_long_pieces_count_as_tiktoken_counts() {
    // The crate's own sources and this repository's docs: prose, Markdown, Rust.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = 0;
    for dir in [root.join("src"), root.join("../../docs")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if let Ok(text) = std::fs::read_to_string(&path) {
                assert_same(&text);
                files += 1;
            }
        }
    }
    assert!(files > 10, "read {files} files");
    // Pieces long enough for the merge to go far: one word of 5,000 letters, a base64 run.
    assert_same(&"ab".repeat(2_500));
    assert_same(&"QUJD".repeat(1_000));
    assert_same(&"supercalifragilistic".repeat(50));
}
