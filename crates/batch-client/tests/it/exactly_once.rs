//! exactly_once tests.
