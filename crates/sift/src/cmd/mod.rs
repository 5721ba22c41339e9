//! One module per subcommand; each exposes its clap arguments and a `run` function.

pub mod bench;
pub mod build;
pub mod build_summary;
pub mod check;
pub mod dataset;
pub mod demo;
pub mod doctor;
pub mod lcid;
pub mod parsing;
pub mod prefilter;
pub mod serve;
pub mod suburls;
