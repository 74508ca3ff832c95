//! This process's resident memory, read from `/proc/self/status` (Linux).

use anyhow::Context;

/// This process's peak resident set (VmHWM), in KiB.
pub(crate) fn peak_rss_kib() -> anyhow::Result<u64> {
    status_kib("VmHWM:")
}

/// One `kB` field of `/proc/self/status`.
pub(crate) fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}
