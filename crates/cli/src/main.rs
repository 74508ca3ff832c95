//! The `batchbeam` binary: the one user-facing entry point.

fn main() {}
