//! Manager credentials for offline approvals: argon2id PIN hashes from `[[managers]]`, and a
//! lock-out after five wrong PINs in a row for five minutes (monotonic time).
//!
//! Invariants: a locked-out manager is refused without the PIN even being checked, so guessing
//! cannot continue during the lock; the caller audits every refusal and lock-out; failures
//! are counted only for configured managers, so the table is bounded by `[[managers]]`.

use crate::config::ManagerEntry;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: u32 = 5;
pub const LOCKOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Ok,
    /// Wrong PIN or unknown manager; `locked_now` when this failure started a lock-out.
    Bad {
        locked_now: bool,
    },
    LockedOut {
        remaining: Duration,
    },
}

#[derive(Default)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

pub struct Approvals {
    hashes: HashMap<String, String>,
    failures: Mutex<HashMap<String, Failures>>,
}

impl Approvals {
    pub fn new(managers: &[ManagerEntry]) -> Approvals {
        Approvals {
            hashes: managers
                .iter()
                .map(|m| (m.id.clone(), m.pin_hash.clone()))
                .collect(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Checks `pin` for `manager_id`. Blocking (argon2): call from `spawn_blocking`.
    ///
    /// The attempt is counted as a failure before the PIN is verified and forgiven if it
    /// was right: attempts sent in parallel each take a place in the count, so no more than
    /// [`MAX_FAILURES`] are ever verified before the lock-out, however many arrive at once.
    pub fn check(&self, manager_id: &str, pin: &str) -> Check {
        let Some(hash) = self.hashes.get(manager_id) else {
            // No such manager: nothing to count. Counting would let a register grow the
            // table without bound by sending ever new ids (found reviewing schemathesis runs).
            return Check::Bad { locked_now: false };
        };
        let now = Instant::now();
        let locked_now = {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let f = failures.entry(manager_id.to_string()).or_default();
            match f.locked_until {
                Some(until) if until > now => {
                    return Check::LockedOut {
                        remaining: until - now,
                    }
                }
                Some(_) => *f = Failures::default(),
                None => {}
            }
            f.count += 1;
            let locked_now = f.count >= MAX_FAILURES;
            if locked_now {
                f.locked_until = Some(now + LOCKOUT);
            }
            locked_now
        };
        if crate::credentials::verify_pin(pin, hash) {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            failures.insert(manager_id.to_string(), Failures::default());
            return Check::Ok;
        }
        Check::Bad { locked_now }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approvals() -> Approvals {
        Approvals::new(&[ManagerEntry {
            id: "M1".into(),
            pin_hash: crate::credentials::hash_pin("2468").unwrap(),
        }])
    }

    #[test]
    fn the_right_pin_passes_and_a_wrong_one_does_not() {
        let a = approvals();
        assert_eq!(a.check("M1", "2468"), Check::Ok);
        assert_eq!(a.check("M1", "1357"), Check::Bad { locked_now: false });
        assert_eq!(a.check("M9", "2468"), Check::Bad { locked_now: false });
    }

    #[test]
    fn unknown_manager_ids_are_refused_without_being_remembered() {
        let a = approvals();
        for i in 0..1000 {
            assert_eq!(
                a.check(&format!("ghost-{i}"), "2468"),
                Check::Bad { locked_now: false }
            );
        }
        assert!(a.failures.lock().unwrap().is_empty());
    }

    #[test]
    fn five_wrong_pins_lock_the_manager_out_even_for_the_right_pin() {
        let a = approvals();
        for i in 1..=5 {
            assert_eq!(a.check("M1", "0000"), Check::Bad { locked_now: i == 5 });
        }
        assert!(
            matches!(a.check("M1", "2468"), Check::LockedOut { remaining } if remaining <= LOCKOUT)
        );
    }

    #[test]
    fn wrong_pins_sent_at_once_are_verified_at_most_five_times() {
        let a = std::sync::Arc::new(approvals());
        let answers: Vec<Check> = (0..12)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || a.check("M1", "0000"))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let verified = answers
            .iter()
            .filter(|c| matches!(c, Check::Bad { .. }))
            .count();
        assert_eq!(verified, MAX_FAILURES as usize, "{answers:?}");
        assert!(matches!(a.check("M1", "2468"), Check::LockedOut { .. }));
    }

    #[test]
    fn a_good_pin_resets_the_count_of_failures() {
        let a = approvals();
        for _ in 0..4 {
            a.check("M1", "0000");
        }
        assert_eq!(a.check("M1", "2468"), Check::Ok);
        for _ in 0..4 {
            assert_eq!(a.check("M1", "0000"), Check::Bad { locked_now: false });
        }
    }
}
