//! Integration tests: one binary, one module per area, driving the built executable.

#![allow(clippy::unwrap_used)]

mod alerts;
mod check;
mod daemon;
mod demo;
mod eks;
mod eks_kinds;
mod every_kind;
mod logs;
mod migration;
mod once;
mod ops;
mod receiver;
mod secured;
mod server;
mod simulator;
mod state;
mod support;
