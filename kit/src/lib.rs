//! Plumbing shared by every shop service, so none of it is copied between them.

pub mod db;
mod describe;
pub mod http;
pub mod ids;
pub mod json;
pub mod metrics;
pub mod path;
pub mod problem;
pub mod service;

pub use describe::describe;
pub use json::Json;
pub use path::Path;
pub use problem::Problem;
pub use service::{Parts, Running, Service, ServiceConfig};
