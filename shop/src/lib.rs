//! The `shop` command's library: settings, starting services, the HTTP client, the demo, the bench.
//! Everything testable lives here; `main.rs` only parses the command line.

pub mod bench;
pub mod cli;
pub mod client;
pub mod demo;
pub mod ops;
pub mod provision;
pub mod secrets;
pub mod settings;
pub mod system;
pub mod telemetry;
pub mod wait;

pub use client::ShopClient;
pub use settings::{Settings, Which};
pub use system::System;
