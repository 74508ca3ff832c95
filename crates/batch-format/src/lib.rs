//! OpenAI Batch API wire format: typed request lines, model normalisation, the
//! `BatchRequestBuilder` that splits requests into shards, streaming validation of JSONL input
//! and streaming parsing of output and error files. No I/O beyond `std::io::Read`/`Write`.

mod endpoint;
mod error;
mod tokens;

pub use endpoint::Endpoint;
pub use error::{Error, Result};
pub use tokens::TokenEstimator;
