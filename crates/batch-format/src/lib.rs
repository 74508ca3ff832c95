//! OpenAI Batch API wire format: typed request lines, model normalisation, the
//! `BatchRequestBuilder` that splits requests into shards, streaming validation of JSONL input
//! and streaming parsing of output and error files. No I/O beyond `std::io::Read`/`Write`.
//!
//! ```
//! use batch_format::{BatchRequestBuilder, ChatOptions, ContentPart, ImageDetail, Message};
//!
//! let mut builder = BatchRequestBuilder::new();
//! let changes = builder.add_chat_completion_request(
//!     "critique-001",
//!     vec![
//!         Message::system("You judge how well an image matches its prompt."),
//!         Message::user_parts(vec![
//!             ContentPart::text("Prompt: a red fox in snow. Score 1-10."),
//!             ContentPart::image_url("data:image/png;base64,iVBORw0KGgo=", ImageDetail::Low),
//!         ]),
//!     ],
//!     ChatOptions { model: "gpt-5-mini".into(), temperature: Some(0.3), ..Default::default() },
//! )?;
//! // gpt-5-mini takes only the default temperature: the builder drops it and says so.
//! assert_eq!(changes[0].field, "temperature");
//!
//! let batch = builder.build_batch("batch-2025-12-08")?;
//! let shard = &batch.shards()[0];
//! assert_eq!(shard.manifest().custom_ids, ["critique-001"]);
//! let mut jsonl = Vec::new();
//! shard.write_jsonl(&mut jsonl)?;
//! assert!(jsonl.starts_with(br#"{"custom_id":"critique-001","method":"POST""#));
//! assert!(jsonl.ends_with(b"\n"));
//! # Ok::<(), batch_format::Error>(())
//! ```

mod blocks;
mod builder;
mod chat;
mod endpoint;
mod error;
mod field;
mod image;
mod jsonl;
mod line;
mod model;
mod output;
mod scan;
mod tokens;
mod validate;

pub use builder::{
    Batch, BatchRequestBuilder, ChatOptions, Shard, ShardLimits, ShardManifest, estimate_chat,
};
pub use chat::{
    ChatCompletionRequest, ContentPart, ImageDetail, ImageUrl, JsonSchemaFormat, Message,
    MessageContent, ReasoningEffort, ResponseFormat, Role, ServiceTier, Stop,
};
pub use endpoint::Endpoint;
pub use error::{Error, Result};
pub use image::{
    ImageBackground, ImageGenerationRequest, ImageModeration, ImageOutputFormat, ImageQuality,
    ImageResponseFormat, ImageStyle,
};
pub use jsonl::{Line as JsonlLine, for_each_line as for_each_jsonl_line};
pub use line::{BatchRequestLine, Method, RequestBody};
pub use model::{
    ModelCapabilities, Normalization, NormalizationAction, NormalizationReason, capabilities,
    model_family, normalize_chat,
};
pub use output::{
    ApiErrorBody, LineProblem, LineProblemKind, ManifestMatch, Outcome, OutcomeLine,
    OutcomeLineRef, OutcomeRef, OutputReader, RawJson, ResultMatcher, Usage, read_output,
    read_output_parallel, read_output_parallel_ref,
};
pub use tokens::TokenEstimator;
pub use validate::{
    Problem, ProblemCode, ValidationOptions, ValidationSummary, Validator, validate_jsonl,
    validate_jsonl_parallel,
};
