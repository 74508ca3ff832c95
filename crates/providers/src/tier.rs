//! The tiers a call can travel by and the pipeline operations that choose one.

use std::fmt;

/// How a call reached the model: one type from the batch queue up, re-exported here.
pub use batch_queue::{Tier, UnknownTier};

/// A step of the beam search that makes model calls; each has its own tier in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Operation {
    /// Writing the first WHAT/HOW candidates from the idea (LLM).
    Expand,
    /// Combining WHAT and HOW into the prompt sent to the image model (LLM).
    Combine,
    /// Critiquing a parent candidate (LLM).
    Critique,
    /// Refining a candidate from its critique (LLM).
    Refine,
    /// Rendering a combined prompt into an image (image model).
    Render,
    /// Judging images alone or in pairs (vision model).
    Judge,
}

impl Operation {
    /// Every operation, in pipeline order.
    pub const ALL: [Operation; 6] = [
        Operation::Expand,
        Operation::Combine,
        Operation::Critique,
        Operation::Refine,
        Operation::Render,
        Operation::Judge,
    ];

    /// The name used in configuration, in batch metadata and in the queue.
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::Expand => "expand",
            Operation::Combine => "combine",
            Operation::Critique => "critique",
            Operation::Refine => "refine",
            Operation::Render => "render",
            Operation::Judge => "judge",
        }
    }

    /// The model role that serves the operation.
    pub const fn role(self) -> Role {
        match self {
            Operation::Expand | Operation::Combine | Operation::Critique | Operation::Refine => {
                Role::Llm
            }
            Operation::Render => Role::Image,
            Operation::Judge => Role::Vision,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which model a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The prompt writer.
    Llm,
    /// The image generator.
    Image,
    /// The judge.
    Vision,
}

#[cfg(test)]
mod tests;
