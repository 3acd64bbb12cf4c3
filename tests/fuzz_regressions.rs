//! The fuzz targets' inputs, replayed on stable through the same checks
//! (`fuzz_checks.rs`): the seeds under `tests/fuzz/corpus/<target>/` and every input that
//! once found a defect, under `tests/fuzz/regressions/<target>/`. Named tests for each
//! defect's correct behaviour live beside the code it was in.

use crate::fuzz_checks;
use std::path::Path;

/// Runs `check` on every saved input of `target`, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut replayed = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{} fails its check: {why}", file.display());
            }
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no saved inputs for {target}");
}

#[test]
fn saved_sale_bodies_keep_their_checks() {
    replay("sale_body", fuzz_checks::sale_body);
}

#[test]
fn saved_payment_bodies_keep_their_checks() {
    replay("payment_body", fuzz_checks::payment_body);
}

#[test]
fn saved_money_amounts_keep_their_checks() {
    replay("money_decimal", fuzz_checks::money_decimal);
}

#[test]
fn saved_config_files_keep_their_checks() {
    replay("config_toml", fuzz_checks::config_toml);
}

#[test]
fn saved_config_durations_keep_their_checks() {
    replay("config_duration", fuzz_checks::config_duration);
}

#[test]
fn saved_retry_after_values_keep_their_checks() {
    replay("retry_after", fuzz_checks::retry_after);
}

#[test]
fn saved_stripe_answers_keep_their_checks() {
    replay("stripe_answer", fuzz_checks::stripe_answer);
}

#[test]
fn saved_journal_sales_keep_their_checks() {
    replay("naxml_journal", fuzz_checks::naxml_journal);
}

#[test]
fn saved_movement_days_keep_their_checks() {
    replay("naxml_movement", fuzz_checks::naxml_movement);
}
