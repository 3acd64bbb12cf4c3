//! The real binary fed bad configuration: it names the key and the file and exits 78.

use crate::util::*;
use std::process::Command;

fn run(args: &[&str], cwd: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(posedge_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn a_bad_key_stops_check_config_and_serve_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[store]\ntimezone = \"Mars/Olympus\"\n", "store.timezone"),
        (
            "[offline_payments]\nmax_daily_total = \"lots\"\n",
            "offline_payments.max_daily_total",
        ),
        ("[outbox]\nmax_retires = 3\n", "outbox.max_retires"),
        ("[probe]\ninterval = 30\n", "probe.interval"),
        ("[server]\nlisten = \"nowhere\"\n", "server.listen"),
        (
            "[[registers]]\nid = \"R1\"\ntoken_sha256 = \"short\"\n",
            "registers[0].token_sha256",
        ),
        ("[store\n", "(syntax)"),
    ];
    for (toml, key) in cases {
        let file = dir.path().join("config.toml");
        std::fs::write(&file, toml).unwrap();
        let file_s = file.to_str().unwrap();
        for cmd in ["check-config", "serve"] {
            let (code, text) = run(&[cmd, "--config", file_s], dir.path());
            assert_eq!(code, Some(78), "{cmd} with {toml:?}: {text}");
            assert!(text.contains(key), "{cmd}: {key} not named in: {text}");
            assert!(text.contains(file_s), "{cmd}: file not named in: {text}");
        }
    }
}

#[test]
fn stripe_without_a_findable_secret_key_fails_check_config_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let missing = dir.path().join("stripe.key");
    std::fs::write(
        &file,
        format!("[stripe]\nsecret_key_file = \"{}\"\n", missing.display()),
    )
    .unwrap();
    let (code, text) = run(
        &["check-config", "--config", file.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, Some(78), "{text}");
    assert!(
        text.contains("stripe.secret_key_file") && text.contains("cannot read"),
        "{text}"
    );
    std::fs::write(&missing, "pk_live_not_a_secret\n").unwrap();
    let (code, text) = run(
        &["check-config", "--config", file.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, Some(78), "{text}");
    assert!(text.contains("not a Stripe secret key"), "{text}");
    assert!(
        !text.contains("pk_live_not_a_secret"),
        "the key's content was printed: {text}"
    );
    std::fs::write(&missing, "sk_test_abc\n").unwrap();
    let (code, text) = run(
        &["check-config", "--config", file.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(
        !text.contains("sk_test_abc"),
        "the secret key was printed: {text}"
    );
}

#[test]
fn a_blank_stripe_credential_counts_as_no_key() {
    // systemd/posedge.service falls back to `SetCredential=stripe_secret_key:\n` when
    // /etc/posedge/stripe.key is absent: that must read as "no key", not as a malformed one.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[stripe]\n").unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    let check = || {
        let out = Command::new(posedge_bin())
            .args(["check-config", "--config", file.to_str().unwrap()])
            .env("CREDENTIALS_DIRECTORY", &creds)
            .env_remove("POSEDGE_STRIPE_SECRET_KEY")
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    std::fs::write(creds.join("stripe_secret_key"), "\n").unwrap();
    let (code, text) = check();
    assert_eq!(code, Some(78), "{text}");
    assert!(text.contains("no secret key was found"), "{text}");
    std::fs::write(creds.join("stripe_secret_key"), "sk_test_cred\n").unwrap();
    let (code, text) = check();
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn a_missing_config_file_given_explicitly_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = run(
        &["check-config", "--config", "/nonexistent/posedge.toml"],
        dir.path(),
    );
    assert_eq!(code, Some(78), "{text}");
    assert!(text.contains("/nonexistent/posedge.toml"), "{text}");
}

#[test]
fn a_valid_config_passes_check_config_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, config_toml(dir.path(), "127.0.0.1:9", "", "")).unwrap();
    let (code, text) = run(
        &["check-config", "--config", file.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with("ok:") && text.contains("2 registers"),
        "{text}"
    );
}

#[test]
fn without_any_config_file_the_defaults_are_valid() {
    if std::path::Path::new(posedge::config::DEFAULT_CONFIG_PATH).exists() {
        eprintln!(
            "skipped: this machine has an installed {}",
            posedge::config::DEFAULT_CONFIG_PATH
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = run(&["check-config"], dir.path());
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("built-in defaults") && text.contains("127.0.0.1:8080"),
        "{text}"
    );
    assert!(text.contains("posedge-data/posedge.db"), "{text}");
}

#[test]
fn hash_token_and_hash_pin_print_values_the_config_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (code, token_hash) = run(&["hash-token", "s3cret"], dir.path());
    assert_eq!(code, Some(0));
    let (code, pin_hash) = run(&["hash-pin", "2468"], dir.path());
    assert_eq!(code, Some(0));
    let toml = format!(
        "[[registers]]\nid = \"R9\"\ntoken_sha256 = \"{}\"\n[[managers]]\nid = \"M1\"\npin_hash = \"{}\"\n",
        token_hash.trim(),
        pin_hash.trim()
    );
    let file = dir.path().join("c.toml");
    std::fs::write(&file, toml).unwrap();
    let (code, text) = run(
        &["check-config", "--config", file.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        token_hash.trim(),
        posedge::credentials::hash_token("s3cret")
    );
    assert!(posedge::credentials::verify_pin("2468", pin_hash.trim()));
}
