//! The fuzz targets' checks, compiled from the one file the stable test suite replays
//! regressions with, so a saved crash input is checked the same way in both places.
#[path = "../../fuzz_checks.rs"]
pub mod checks;
