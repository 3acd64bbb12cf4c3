//! The offline policy as a pure function: `decide(request, policy, counters) -> Decision`.
//!
//! Invariant 5: the counters passed in are read inside the same serialized write transaction
//! that records the decision, so no two decisions can both spend the same headroom.
//! Everything here is integer minor units; there is no clock and no I/O.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub enabled: bool,
    pub allowed_methods: Vec<String>,
    pub max_transaction_amount: i64,
    pub max_daily_total: i64,
    pub max_outstanding_total: i64,
    pub require_manager_approval: bool,
    pub approval_required_over: i64,
}

/// What has already been approved offline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Approved offline on this business date at this location.
    pub today_total: i64,
    /// Approved offline and not yet accepted (or refused) by Stripe.
    pub outstanding_total: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    OfflineDisabled,
    MethodNotAllowed,
    OverTransactionLimit,
    OverDailyLimit,
    OverOutstandingLimit,
    /// A manager's approval came after the payment waited longer than the offline window.
    OutsideOfflineWindow,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::OfflineDisabled => "offline_disabled",
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::OverTransactionLimit => "over_transaction_limit",
            Refusal::OverDailyLimit => "over_daily_limit",
            Refusal::OverOutstandingLimit => "over_outstanding_limit",
            Refusal::OutsideOfflineWindow => "outside_offline_window",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::OfflineDisabled => {
                "Card payments cannot be taken while offline. Ask for cash."
            }
            Refusal::MethodNotAllowed => "This payment method is not allowed while offline.",
            Refusal::OverTransactionLimit => {
                "Amount is over the offline limit for one card payment. Ask for cash or split."
            }
            Refusal::OverDailyLimit => "Today's offline card limit is used up. Ask for cash.",
            Refusal::OverOutstandingLimit => {
                "Too many card payments are waiting to reach the bank. Ask for cash."
            }
            Refusal::OutsideOfflineWindow => {
                "This payment waited too long for a manager. Take the payment again or ask for cash."
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    NeedsApproval,
    Refuse(Refusal),
}

/// Decides one offline payment of `amount` by `method`.
pub fn decide(method: &str, amount: i64, policy: &Policy, counters: Counters) -> Decision {
    if !policy.enabled {
        return Decision::Refuse(Refusal::OfflineDisabled);
    }
    if !policy.allowed_methods.iter().any(|m| m == method) {
        return Decision::Refuse(Refusal::MethodNotAllowed);
    }
    if amount > policy.max_transaction_amount {
        return Decision::Refuse(Refusal::OverTransactionLimit);
    }
    // saturating: corrupt counters must refuse, never wrap around into approval.
    if counters.today_total.saturating_add(amount) > policy.max_daily_total {
        return Decision::Refuse(Refusal::OverDailyLimit);
    }
    if counters.outstanding_total.saturating_add(amount) > policy.max_outstanding_total {
        return Decision::Refuse(Refusal::OverOutstandingLimit);
    }
    if policy.require_manager_approval || amount > policy.approval_required_over {
        return Decision::NeedsApproval;
    }
    Decision::Approve
}

/// How much the next offline card payment may be, given the counters.
pub fn remaining(policy: &Policy, counters: Counters) -> (i64, i64) {
    let today = (policy.max_daily_total - counters.today_total).max(0);
    let outstanding = (policy.max_outstanding_total - counters.outstanding_total).max(0);
    let next = policy
        .max_transaction_amount
        .min(today)
        .min(outstanding)
        .max(0);
    (today, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn policy() -> Policy {
        Policy {
            enabled: true,
            allowed_methods: vec!["cash".into(), "card".into()],
            max_transaction_amount: 50_000,
            max_daily_total: 500_000,
            max_outstanding_total: 500_000,
            require_manager_approval: false,
            approval_required_over: 10_000,
        }
    }

    #[test]
    fn a_small_card_payment_within_every_limit_is_approved() {
        assert_eq!(
            decide("card", 430, &policy(), Counters::default()),
            Decision::Approve
        );
    }

    #[test]
    fn each_limit_refuses_with_its_own_reason() {
        let p = policy();
        let refuse = |r| Decision::Refuse(r);
        assert_eq!(
            decide("card", 50_001, &p, Counters::default()),
            refuse(Refusal::OverTransactionLimit)
        );
        let today = Counters {
            today_total: 499_000,
            outstanding_total: 0,
        };
        assert_eq!(
            decide("card", 1_001, &p, today),
            refuse(Refusal::OverDailyLimit)
        );
        let out = Counters {
            today_total: 0,
            outstanding_total: 499_570,
        };
        assert_eq!(
            decide("card", 431, &p, out),
            refuse(Refusal::OverOutstandingLimit)
        );
        assert_eq!(
            decide("giftcard", 100, &p, Counters::default()),
            refuse(Refusal::MethodNotAllowed)
        );
        let off = Policy {
            enabled: false,
            ..p
        };
        assert_eq!(
            decide("card", 100, &off, Counters::default()),
            refuse(Refusal::OfflineDisabled)
        );
    }

    #[test]
    fn exactly_at_a_limit_is_still_allowed() {
        let c = Counters {
            today_total: 450_000,
            outstanding_total: 450_000,
        };
        assert_eq!(
            decide(
                "card",
                50_000,
                &Policy {
                    approval_required_over: 50_000,
                    ..policy()
                },
                c
            ),
            Decision::Approve
        );
    }

    #[test]
    fn manager_approval_is_needed_above_the_threshold_or_always_when_configured() {
        assert_eq!(
            decide("card", 10_000, &policy(), Counters::default()),
            Decision::Approve
        );
        assert_eq!(
            decide("card", 10_001, &policy(), Counters::default()),
            Decision::NeedsApproval
        );
        let always = Policy {
            require_manager_approval: true,
            ..policy()
        };
        assert_eq!(
            decide("card", 1, &always, Counters::default()),
            Decision::NeedsApproval
        );
    }

    #[test]
    fn overflowing_counters_refuse_rather_than_wrap() {
        let c = Counters {
            today_total: i64::MAX,
            outstanding_total: 0,
        };
        assert_eq!(
            decide("card", 1, &policy(), c),
            Decision::Refuse(Refusal::OverDailyLimit)
        );
    }

    /// Property: whatever sequence of payments arrives, approving only what `decide` approves
    /// never takes the day's total past the daily limit or the outstanding past its limit.
    #[test]
    fn no_sequence_of_decisions_overspends_a_limit() {
        let mut rng = rand::rng();
        for _ in 0..2_000 {
            let p = Policy {
                max_transaction_amount: rng.random_range(1..100_000),
                max_daily_total: rng.random_range(0..1_000_000),
                max_outstanding_total: rng.random_range(0..1_000_000),
                approval_required_over: rng.random_range(0..100_000),
                require_manager_approval: rng.random_bool(0.2),
                ..policy()
            };
            let mut c = Counters::default();
            for _ in 0..50 {
                let amount = rng.random_range(1..120_000);
                match decide("card", amount, &p, c) {
                    Decision::Approve | Decision::NeedsApproval => {
                        assert!(amount <= p.max_transaction_amount);
                        c.today_total += amount;
                        c.outstanding_total += amount;
                    }
                    Decision::Refuse(_) => {}
                }
                // Forwarding sometimes clears outstanding.
                if rng.random_bool(0.1) {
                    c.outstanding_total = 0;
                }
                assert!(c.today_total <= p.max_daily_total, "{p:?} {c:?}");
                assert!(
                    c.outstanding_total <= p.max_outstanding_total,
                    "{p:?} {c:?}"
                );
                let (today, next) = remaining(&p, c);
                assert!(today >= 0 && next >= 0 && next <= p.max_transaction_amount);
            }
        }
    }
}
