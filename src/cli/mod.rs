//! The `payguard` command's subcommands that talk to a sidecar or run one for show, kept out
//! of `main.rs` so it stays the sidecar's entry point.

pub mod demo;
pub mod stats;
