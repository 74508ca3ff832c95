//! Project automation.
