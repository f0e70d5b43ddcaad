pub mod dataset;
mod run;

pub use run::{DemoArgs, run};
