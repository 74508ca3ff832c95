//! `xtask-worker judge-sizes`: the bytes of a judge request with two realistic 1024x1024 renders,
//! as rendered and after downscaling for each detail level, against the 200 MB batch-file limit
//! (part of `cargo xtask bench session`). Prints the table.

use anyhow::Context as _;
use batch_format::{BatchRequestLine, ImageDetail};
use orchestrator::downscale::{prepare_for_judge, synthetic_photo};
use providers::CompareRequest;

const IDEA: &str = "a lighthouse on a basalt cliff in a winter storm";
/// OpenAI's limit on a batch input file.
const BATCH_FILE_LIMIT: f64 = 200.0 * 1024.0 * 1024.0;
/// Comparisons in the guide's second judge stage.
const STAGE_REQUESTS: f64 = 189.0;

/// Bytes of one comparison's batch line with two images.
fn compare_line_bytes(a: Vec<u8>, b: Vec<u8>, detail: ImageDetail) -> anyhow::Result<usize> {
    let request = CompareRequest {
        idea: IDEA.into(),
        image_a: a,
        image_b: b,
        detail: Some(detail),
        alpha: 0.7,
        vote: 0,
        seed: None,
        key: None,
    };
    let body = providers::codec::compare_body("gpt-4o-mini", &request)?;
    let line = BatchRequestLine::chat("rq_k0123456789abcdef0123456789abcdef", body);
    Ok(serde_json::to_vec(&line)?.len() + 1)
}

/// Prints the table.
pub(crate) fn run() -> anyhow::Result<()> {
    let a = synthetic_photo(1024, 1024, 1);
    let b = synthetic_photo(1024, 1024, 2);
    let raw = compare_line_bytes(a.clone(), b.clone(), ImageDetail::Low)?;
    let mut sizes = String::new();
    sizes.push_str(&format!(
        "{:<42} {:>14} {:>22}\n",
        "judge request (2 images, 1024x1024)", "bytes/request", "stage of 189 requests"
    ));
    let stage = |bytes: usize| {
        let total = bytes as f64 * STAGE_REQUESTS;
        format!(
            "{:>8.1} MB ({:>4.0}% of 200 MB)",
            total / 1e6,
            100.0 * total / BATCH_FILE_LIMIT
        )
    };
    sizes.push_str(&format!(
        "{:<42} {:>14} {:>22}\n",
        "as rendered (PNG)",
        raw,
        stage(raw)
    ));
    for (name, detail) in [
        ("downscaled for detail low", ImageDetail::Low),
        ("downscaled for detail high", ImageDetail::High),
    ] {
        let (pa, pb) = (
            prepare_for_judge(&a, detail)?,
            prepare_for_judge(&b, detail)?,
        );
        let bytes = compare_line_bytes(pa.bytes, pb.bytes, detail)?;
        sizes.push_str(&format!(
            "{:<42} {:>14} {:>22}  ({:.1}x smaller)\n",
            format!(
                "{name} ({}x{} {})",
                pa.width,
                pa.height,
                pa.mime.trim_start_matches("image/")
            ),
            bytes,
            stage(bytes),
            raw as f64 / bytes as f64
        ));
    }
    print!("{sizes}");
    std::io::Write::flush(&mut std::io::stdout()).context("writing the table")?;
    Ok(())
}
