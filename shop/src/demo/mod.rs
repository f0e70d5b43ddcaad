pub mod dataset;
mod run;

pub use run::{DemoArgs, ReplayReport, data_path, replay, run};
