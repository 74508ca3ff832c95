//! `batchbeam serve`: the guide's job API over HTTP (`POST /api/beam-search`, `GET
//! /api/job/{id}`, ...), jobs kept in the database and run by a bounded pool of workers, and
//! live progress over WebSocket. See `docs/server.md`.

pub mod dashboard;
pub mod view;
