//! Shared helpers for the phase suites (temp files, fixtures).
