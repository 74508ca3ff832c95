//! secrets tests.
