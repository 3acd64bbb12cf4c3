//! Secrets at rest: register/admin tokens as SHA-256 hex, manager PINs as argon2id hashes.
//!
//! Invariants: plaintext tokens and PINs are never stored or logged; token comparison is
//! constant-time and checks every configured entry, so timing does not tell which one matched.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Hex SHA-256 of a bearer token, as written in `token_sha256`.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Returns the index of the entry whose hash matches `token`, comparing against all of them.
pub fn match_token<'a>(token: &str, hashes: impl Iterator<Item = &'a str>) -> Option<usize> {
    let digest = Sha256::digest(token.as_bytes());
    let mut found = None;
    for (i, h) in hashes.enumerate() {
        let Ok(expected) = hex::decode(h) else {
            continue;
        };
        if bool::from(expected.ct_eq(digest.as_slice())) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

/// An argon2id PHC string for a manager PIN.
pub fn hash_pin(pin: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(pin.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// True when `pin` matches the PHC string `hash`.
pub fn verify_pin(pin: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(pin.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Config validation: the hash must be an argon2id PHC string.
pub fn check_pin_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash)
        .map_err(|_| "must be an argon2id hash; `posedge hash-pin PIN` prints one".to_string())?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "uses {}, expected argon2id; `posedge hash-pin PIN` prints one",
            parsed.algorithm
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_only_its_own_hash() {
        let hashes = [hash_token("alpha"), hash_token("bravo")];
        let iter = || hashes.iter().map(String::as_str);
        assert_eq!(match_token("bravo", iter()), Some(1));
        assert_eq!(match_token("alpha", iter()), Some(0));
        assert_eq!(match_token("charlie", iter()), None);
        assert_eq!(match_token("", iter()), None);
    }

    #[test]
    fn pins_verify_against_their_argon2id_hash_only() {
        let h = hash_pin("2468").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(check_pin_hash(&h).is_ok());
        assert!(verify_pin("2468", &h));
        assert!(!verify_pin("2469", &h));
        assert!(!verify_pin("2468", "not a hash"));
        assert!(check_pin_hash("plaintext").is_err());
    }
}
