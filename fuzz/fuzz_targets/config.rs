//! The config reader (`config::parse_bytes`) on arbitrary bytes: every input is a valid config or a list of problems
//! with their places, never a panic.
#![no_main]

use std::io;
use std::path::Path;

use fargate_health_monitor::config::{self, Environment};
use libfuzzer_sys::fuzz_target;

/// An environment with one variable and no files: `_file` keys get "not found".
struct FuzzEnvironment;

impl Environment for FuzzEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        (name == "FUZZ_SECRET").then(|| "s3cr3t-from-the-environment".to_owned())
    }

    fn read_file(&self, _path: &Path) -> io::Result<String> {
        Err(io::Error::from(io::ErrorKind::NotFound))
    }
}

fuzz_target!(|data: &[u8]| {
    match config::parse_bytes(data, Path::new("/nonexistent/fuzz.toml"), &FuzzEnvironment) {
        Ok(loaded) => drop(format!("{:?}", loaded.config)),
        Err(error) => {
            assert!(!error.problems.is_empty(), "rejected without a problem");
            drop(error.to_string());
        }
    }
});
