//! Stripe: PaymentIntents over HTTPS (hyper + rustls), form-encoded, `Idempotency-Key` on
//! every POST, an explicit `Stripe-Version`.
//!
//! Invariants:
//! - the secret key is never logged (its header value is marked sensitive);
//! - the create parameters of a payment are built by one function from the stored payment,
//!   so the online attempt and every forward send byte-identical parameters under the same
//!   key, which is what lets Stripe deduplicate them;
//! - answers are classified as DESIGN.md says: network errors, timeouts, 409, 429 and 5xx
//!   retry (unless `Stripe-Should-Retry: false`); 402 is a decline; other 4xx are permanent.

use super::http::{retry_after, HttpClient, HttpError, Response};
use crate::config::StripeConfig;
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::Method;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

pub const STRIPE_VERSION: &str = "2024-06-20";
/// Least wait before retrying a key Stripe reports as still in progress (409).
pub const IN_PROGRESS_WAIT: Duration = Duration::from_secs(2);

/// Finds the secret key: `secret_key_file`, `secret_key`, env `POSEDGE_STRIPE_SECRET_KEY`,
/// then the systemd credential `$CREDENTIALS_DIRECTORY/stripe_secret_key` (blank counts as absent).
pub fn load_secret_key(cfg: &StripeConfig) -> Result<String, (&'static str, String)> {
    let check = |key: String, source: &str| {
        let key = key.trim().to_string();
        if key.starts_with("sk_") || key.starts_with("rk_") {
            Ok(key)
        } else {
            Err((
                "stripe.secret_key",
                format!("the key from {source} is not a Stripe secret key (sk_… or rk_…)"),
            ))
        }
    };
    if let Some(path) = &cfg.secret_key_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            (
                "stripe.secret_key_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        return check(text, &path.display().to_string());
    }
    if let Some(k) = &cfg.secret_key {
        return check(k.clone(), "stripe.secret_key");
    }
    if let Ok(k) = std::env::var("POSEDGE_STRIPE_SECRET_KEY") {
        return check(k, "POSEDGE_STRIPE_SECRET_KEY");
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join("stripe_secret_key");
        // A blank credential is the unit's `SetCredential=` fallback for a missing
        // /etc/posedge/stripe.key: no key, not a malformed one.
        if let Ok(text) = std::fs::read_to_string(&path) {
            if !text.trim().is_empty() {
                return check(text, "the systemd credential stripe_secret_key");
            }
        }
    }
    Err((
        "stripe.secret_key_file",
        "[stripe] is configured but no secret key was found: set secret_key_file, secret_key, env POSEDGE_STRIPE_SECRET_KEY or the systemd credential stripe_secret_key".into(),
    ))
}

/// What a PaymentIntent is created from. Built from the stored payment, always the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentParams {
    pub amount: i64,
    pub currency: String,
    pub payment_method: String,
    pub payment_id: String,
    pub location_id: String,
}

impl IntentParams {
    /// The form body, fields in a fixed order.
    pub fn form(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("amount", &self.amount.to_string())
            .append_pair("currency", &self.currency.to_ascii_lowercase())
            .append_pair("payment_method", &self.payment_method)
            .append_pair("confirm", "true")
            .append_pair("payment_method_types[]", "card")
            .append_pair("metadata[posedge_payment_id]", &self.payment_id)
            .append_pair("metadata[location_id]", &self.location_id)
            .finish()
    }
}

/// A Stripe answer, as the payment flows need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Charged.
    Succeeded { intent: String },
    /// Authorized, to be captured.
    Authorized { intent: String },
    /// Still processing at the bank: look again later.
    Processing { intent: String },
    /// The card was declined.
    Declined {
        intent: Option<String>,
        code: String,
        message: String,
    },
    /// No definitive answer: retry with the same key. `reachable = false` when no connection
    /// could be made (the request cannot have arrived). `in_progress`: Stripe is still
    /// executing an earlier request under this key (409), which is not a failed attempt.
    Retry {
        error: String,
        retry_after: Option<Duration>,
        reachable: bool,
        in_progress: bool,
    },
    /// A request Stripe will never accept as it is (bad key, bad parameters).
    Permanent { error: String },
}

#[derive(Clone)]
pub struct Stripe {
    client: HttpClient,
    base: String,
    auth: HeaderValue,
}

impl Stripe {
    pub fn new(cfg: &StripeConfig, secret_key: &str, client: HttpClient) -> Result<Stripe, String> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {secret_key}")).map_err(|_| {
            "the Stripe secret key has characters a header cannot carry".to_string()
        })?;
        auth.set_sensitive(true);
        Ok(Stripe {
            client,
            base: cfg.api_base.trim_end_matches('/').to_string(),
            auth,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        form: Option<String>,
        key: Option<&str>,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let mut headers = vec![
            (AUTHORIZATION, self.auth.clone()),
            (
                HeaderName::from_static("stripe-version"),
                HeaderValue::from_static(STRIPE_VERSION),
            ),
        ];
        if form.is_some() {
            headers.push((
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            ));
        }
        if let Some(k) = key.and_then(|k| HeaderValue::from_str(k).ok()) {
            headers.push((HeaderName::from_static("idempotency-key"), k));
        }
        let url = format!("{}{path}", self.base);
        self.client
            .send(
                method,
                &url,
                &headers,
                Bytes::from(form.unwrap_or_default()),
                timeout,
            )
            .await
    }

    /// Creates and confirms a PaymentIntent under `key`.
    pub async fn create_intent(
        &self,
        params: &IntentParams,
        key: &str,
        timeout: Duration,
    ) -> Answer {
        classify(
            self.call(
                Method::POST,
                "/v1/payment_intents",
                Some(params.form()),
                Some(key),
                timeout,
            )
            .await,
        )
    }

    /// Finds the PaymentIntent of a payment by its metadata (for unclear answers and for
    /// forwards whose key Stripe may have pruned after 24 h).
    pub async fn find_by_payment(
        &self,
        payment_id: &str,
        timeout: Duration,
    ) -> Result<Option<(String, Answer)>, Answer> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "query",
                &format!("metadata['posedge_payment_id']:'{payment_id}'"),
            )
            .finish();
        let r = self
            .call(
                Method::GET,
                &format!("/v1/payment_intents/search?{query}"),
                None,
                None,
                timeout,
            )
            .await;
        match r {
            Ok(resp) if resp.status.is_success() => {
                let v: Value = serde_json::from_slice(&resp.body).unwrap_or_default();
                let found = v["data"].as_array().and_then(|d| d.first()).cloned();
                Ok(found.map(|pi| {
                    (
                        pi["id"].as_str().unwrap_or_default().to_string(),
                        from_intent(&pi),
                    )
                }))
            }
            other => Err(classify(other)),
        }
    }

    /// Refunds a charged PaymentIntent (voiding a payment we refused after an unclear try).
    pub async fn refund(&self, intent: &str, key: &str, timeout: Duration) -> Answer {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("payment_intent", intent)
            .finish();
        let r = self
            .call(Method::POST, "/v1/refunds", Some(form), Some(key), timeout)
            .await;
        // A refund object is not a PaymentIntent: any 2xx is the refund accepted (a pending
        // refund completes at Stripe on its own).
        if r.as_ref().is_ok_and(|resp| resp.status.is_success()) {
            return Answer::Succeeded {
                intent: intent.into(),
            };
        }
        match classify(r) {
            Answer::Declined { .. } | Answer::Processing { .. } | Answer::Authorized { .. } => {
                Answer::Succeeded {
                    intent: intent.into(),
                }
            }
            other => other,
        }
    }

    /// Cancels an authorized, uncaptured PaymentIntent.
    pub async fn cancel(&self, intent: &str, key: &str, timeout: Duration) -> Answer {
        classify(
            self.call(
                Method::POST,
                &format!("/v1/payment_intents/{intent}/cancel"),
                Some(String::new()),
                Some(key),
                timeout,
            )
            .await,
        )
    }
}

/// PaymentIntent statuses that say the card was not charged: with `confirm=true` this is
/// what a decline, or a step a register cannot take (3-D Secure), looks like.
pub const NOT_CHARGED_STATUSES: &[&str] = &[
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "canceled",
];

/// A non-empty string field.
fn text(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// A PaymentIntent object → what it means for the payment. Only an intent with its id and a
/// status we know is an answer; anything else in a 2xx (a proxy's page, a cut or garbled
/// body) says nothing about the charge, so it is retried under the same key, never taken
/// for a decline: the card may have been charged, and the register would take the money a
/// second time.
fn from_intent(pi: &Value) -> Answer {
    let status = pi["status"].as_str().unwrap_or_default();
    let Some(intent) = text(&pi["id"]).map(str::to_string) else {
        return Answer::Retry {
            error: "Stripe answered 2xx without a PaymentIntent id".into(),
            retry_after: None,
            reachable: true,
            in_progress: false,
        };
    };
    match status {
        "succeeded" => Answer::Succeeded { intent },
        "requires_capture" => Answer::Authorized { intent },
        "processing" => Answer::Processing { intent },
        s if NOT_CHARGED_STATUSES.contains(&s) => {
            let err = &pi["last_payment_error"];
            Answer::Declined {
                intent: Some(intent),
                code: text(&err["decline_code"])
                    .or(text(&err["code"]))
                    .unwrap_or(s)
                    .to_string(),
                message: text(&err["message"])
                    .unwrap_or("The card was not charged.")
                    .to_string(),
            }
        }
        other => Answer::Retry {
            error: format!("Stripe answered PaymentIntent {intent} with status {other:?}, which says nothing about the charge"),
            retry_after: None,
            reachable: true,
            in_progress: false,
        },
    }
}

/// HTTP outcome → [`Answer`].
pub fn classify(r: Result<Response, HttpError>) -> Answer {
    let resp = match r {
        Ok(resp) => resp,
        Err(e) => {
            return Answer::Retry {
                reachable: !e.never_sent(),
                error: e.to_string(),
                retry_after: None,
                in_progress: false,
            }
        }
    };
    let body: Value = serde_json::from_slice(&resp.body).unwrap_or_default();
    let code = resp.status.as_u16();
    if resp.status.is_success() {
        return from_intent(&body);
    }
    let err = &body["error"];
    let message = err["message"].as_str().unwrap_or("").to_string();
    let error = format!(
        "Stripe HTTP {code}: {} {}",
        err["type"].as_str().unwrap_or(""),
        message
    )
    .trim()
    .to_string();
    let should_retry = resp
        .headers
        .get("stripe-should-retry")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.eq_ignore_ascii_case("true"));
    if code == 402 {
        return Answer::Declined {
            intent: text(&err["payment_intent"]["id"]).map(str::to_string),
            code: text(&err["decline_code"])
                .or(text(&err["code"]))
                .unwrap_or("card_declined")
                .to_string(),
            message: if message.is_empty() {
                "Your card was declined.".into()
            } else {
                message
            },
        };
    }
    // 409 `idempotency_key_in_use`: Stripe is still executing an earlier request under this
    // key (our attempt from before a crash, or behind a dark link). Retrying at once only
    // collects more 409s; give it time. Checked before Stripe-Should-Retry, which may come
    // with it (an explicit `false` still wins). Only this exact code is "in progress"; any
    // other 409 is an ordinary retry.
    if code == 409
        && err["code"].as_str() == Some("idempotency_key_in_use")
        && should_retry != Some(false)
    {
        return Answer::Retry {
            error,
            retry_after: Some(
                retry_after(&resp.headers)
                    .unwrap_or_default()
                    .max(IN_PROGRESS_WAIT),
            ),
            reachable: true,
            in_progress: true,
        };
    }
    match should_retry {
        Some(false) => Answer::Permanent { error },
        Some(true) => Answer::Retry {
            error,
            retry_after: retry_after(&resp.headers),
            reachable: true,
            in_progress: false,
        },
        None if code == 409 => Answer::Retry {
            error,
            retry_after: Some(
                retry_after(&resp.headers)
                    .unwrap_or_default()
                    .max(IN_PROGRESS_WAIT),
            ),
            reachable: true,
            in_progress: false,
        },
        None if code == 429 || resp.status.is_server_error() => Answer::Retry {
            error,
            retry_after: retry_after(&resp.headers),
            reachable: true,
            in_progress: false,
        },
        None => Answer::Permanent { error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderMap;
    use hyper::StatusCode;

    fn resp(
        code: u16,
        body: &str,
        headers: &[(&'static str, &'static str)],
    ) -> Result<Response, HttpError> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_static(v));
        }
        Ok(Response {
            status: StatusCode::from_u16(code).unwrap(),
            headers: h,
            body: Bytes::from(body.to_string()),
            latency: Duration::ZERO,
        })
    }

    #[test]
    fn answers_are_classified_as_the_design_says() {
        assert_eq!(
            classify(resp(200, r#"{"id":"pi_1","status":"succeeded"}"#, &[])),
            Answer::Succeeded {
                intent: "pi_1".into()
            }
        );
        assert_eq!(
            classify(resp(
                200,
                r#"{"id":"pi_1","status":"requires_capture"}"#,
                &[]
            )),
            Answer::Authorized {
                intent: "pi_1".into()
            }
        );
        let declined = classify(resp(
            402,
            r#"{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds."}}"#,
            &[],
        ));
        assert!(
            matches!(declined, Answer::Declined { ref code, .. } if code == "insufficient_funds"),
            "{declined:?}"
        );
        for code in [409, 429, 500, 502, 503] {
            assert!(
                matches!(
                    classify(resp(code, "{}", &[])),
                    Answer::Retry {
                        reachable: true,
                        ..
                    }
                ),
                "{code}"
            );
        }
        assert!(matches!(
            classify(resp(503, "{}", &[("stripe-should-retry", "false")])),
            Answer::Permanent { .. }
        ));
        assert!(matches!(
            classify(resp(400, r#"{"error":{"type":"idempotency_error"}}"#, &[])),
            Answer::Permanent { .. }
        ));
        assert!(matches!(
            classify(resp(401, "{}", &[])),
            Answer::Permanent { .. }
        ));
        assert!(matches!(
            classify(Err(HttpError::Connect("refused".into()))),
            Answer::Retry {
                reachable: false,
                ..
            }
        ));
        assert!(matches!(
            classify(Err(HttpError::Timeout(Duration::from_secs(1)))),
            Answer::Retry {
                reachable: true,
                ..
            }
        ));
        let in_progress = classify(resp(
            409,
            r#"{"error":{"type":"idempotency_error","code":"idempotency_key_in_use"}}"#,
            &[("stripe-should-retry", "true")],
        ));
        assert!(
            matches!(in_progress, Answer::Retry { retry_after: Some(d), in_progress: true, .. } if d >= IN_PROGRESS_WAIT),
            "{in_progress:?}"
        );
        // Another 409 (a proxy, another conflict) is an ordinary retry: it uses an attempt.
        let other = classify(resp(409, r#"{"error":{"type":"idempotency_error"}}"#, &[]));
        assert!(
            matches!(
                other,
                Answer::Retry {
                    in_progress: false,
                    ..
                }
            ),
            "{other:?}"
        );
        let ra = classify(resp(429, "{}", &[("retry-after", "3")]));
        assert!(
            matches!(ra, Answer::Retry { retry_after: Some(d), .. } if d == Duration::from_secs(3))
        );
    }

    #[test]
    fn a_2xx_that_is_not_a_payment_intent_is_retried_never_a_decline() {
        // Found by the fuzz target stripe_answer: a 200 whose body was cut or garbled was
        // classified as a decline with an empty intent and code, so the register asked for
        // another payment while the card may have been charged.
        for body in [
            "",
            "<html>captive portal</html>",
            "{\"id\":\"pi_1\",\"object\":\"payment_intent\",\"status\":\"requires_pay",
            "{\"status\":\"succeeded\"}",
            "{\"id\":\"\",\"status\":\"requires_capture\"}",
            "{\"id\":\"pi_1\",\"status\":\"some_future_status\"}",
        ] {
            let answer = classify(resp(200, body, &[]));
            assert!(
                matches!(
                    answer,
                    Answer::Retry {
                        reachable: true,
                        ..
                    }
                ),
                "{body:?}: {answer:?}"
            );
        }
        let declined = classify(resp(
            200,
            r#"{"id":"pi_1","status":"requires_payment_method","last_payment_error":{"code":"","decline_code":""}}"#,
            &[],
        ));
        assert_eq!(
            declined,
            Answer::Declined {
                intent: Some("pi_1".into()),
                code: "requires_payment_method".into(),
                message: "The card was not charged.".into()
            }
        );
        let declined = classify(resp(402, r#"{"error":{"decline_code":""}}"#, &[]));
        assert!(
            matches!(&declined, Answer::Declined { code, intent: None, .. } if code == "card_declined"),
            "{declined:?}"
        );
    }

    #[test]
    fn the_create_parameters_are_the_same_bytes_every_time() {
        let p = IntentParams {
            amount: 430,
            currency: "USD".into(),
            payment_method: "pm_card_visa".into(),
            payment_id: "pay_1".into(),
            location_id: "loc-1".into(),
        };
        assert_eq!(p.form(), p.clone().form());
        assert_eq!(
            p.form(),
            "amount=430&currency=usd&payment_method=pm_card_visa&confirm=true&payment_method_types%5B%5D=card&metadata%5Bposedge_payment_id%5D=pay_1&metadata%5Blocation_id%5D=loc-1"
        );
    }
}
