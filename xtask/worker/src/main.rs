//! `xtask-worker`: the parts of `cargo xtask bench` and `cargo xtask demo` that need the
//! workspace's own crates, run by xtask as child processes. Keeping them here lets xtask itself
//! build in seconds from a handful of small crates, and keeps it from building the workspace a
//! second time with features of its own before `cargo xtask ci` has checked anything.
//!
//! ```text
//! xtask-worker format STEP ARGS…     one measured step of `bench format`
//! xtask-worker queue baseline|queue  one side of `bench queue`
//! xtask-worker judge-sizes           the judge request sizes of `bench session`
//! xtask-worker demo-shards DIR       the builder's shards for `demo`
//! xtask-worker chaos-facts LOCATION  what a `chaos` run's database holds, as JSON
//! ```

mod chaos;
mod demo;
mod format;
mod queue;
mod rss;
mod session;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("format") => format::run(rest),
        Some("queue") => queue::run(rest.first().context("queue: which step?")?),
        Some("judge-sizes") => session::run(),
        Some("demo-shards") => demo::run(std::path::Path::new(
            rest.first().context("demo-shards: which folder?")?,
        )),
        Some("chaos-facts") => chaos::run(rest.first().context("chaos-facts: which database?")?),
        _ => bail!(
            "usage: xtask-worker format STEP ARGS… | queue baseline|queue | judge-sizes | demo-shards DIR | chaos-facts LOCATION"
        ),
    }
}
