//! A fake of the Stripe API subset posedge uses, as a real HTTP/1.1 server on 127.0.0.1:
//! PaymentIntents (create + confirm, retrieve, capture, cancel, search by metadata, list),
//! refunds, and Stripe's idempotency layer (saved results replayed with
//! `Idempotent-Replayed: true`, 409 while the first request with a key is still executing,
//! 400 `idempotency_error` for a key reused with other parameters or on another endpoint,
//! nothing saved for requests rejected before execution). Scripted faults, added latency,
//! refusing the port, and a ledger of every request and what it was answered.
//!
//! Requests are `application/x-www-form-urlencoded` like Stripe's; bracketed keys such as
//! `metadata[posedge_payment_id]` are kept as literal keys of the form map.
//!
//! Not modelled: idempotency keys expiring after 24 h and being scoped per account, search
//! results lagging behind writes (Stripe's search is eventually consistent, up to a minute),
//! minimum charge amounts, `automatic_payment_methods`/`return_url` rules of newer API
//! versions, 3DS (`requires_action`), webhooks, pagination.

#![allow(dead_code)]

use super::fake_port::{FakePort, Handler};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use rand::distr::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One PaymentIntent as the fake holds it.
#[derive(Debug, Clone)]
pub struct Intent {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// `succeeded`, `requires_capture`, `requires_payment_method` (declined),
    /// `requires_confirmation` (created without `confirm=true`), `canceled`.
    pub status: String,
    /// The payment method given at creation (kept for a declined one too; "" if none).
    pub payment_method: String,
    pub metadata: BTreeMap<String, String>,
    /// The `Idempotency-Key` of the request that created it.
    pub idempotency_key: Option<String>,
    /// Fully refunded.
    pub refunded: bool,
}

/// How to answer one POST (one-shot, in order; see [`FakeStripe::script`]).
#[derive(Debug, Clone)]
pub enum StripeFault {
    /// Answer this status with a Stripe error body before executing (and before the
    /// idempotency layer): nothing is saved, so a retry with the same key executes.
    Status(u16),
    /// 429 `rate_limit` before the idempotency layer (not saved).
    RateLimited,
    /// Answer this status with `Stripe-Should-Retry: false`, before executing (not saved).
    ShouldNotRetry(u16),
    /// Wait (with the key already "in progress"), then handle normally: the PI is created
    /// even though the client has usually timed out.
    Stall(Duration),
    /// Execute (create the PI, save the idempotent result), then drop the connection.
    ExecuteThenDrop,
    /// Execute, then answer 500 and save that 500 as the idempotent result: retries with the
    /// same key replay the 500 (as Stripe does).
    ExecuteThen500,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct StripeRequest {
    pub method: String,
    pub path: String,
    /// The raw query string ("" if none).
    pub query: String,
    pub idempotency_key: Option<String>,
    /// The decoded form body (for a GET: the decoded query string).
    pub form: BTreeMap<String, String>,
    /// The status answered, `None` if the connection was dropped (or not answered yet).
    pub answered: Option<u16>,
    /// Answered from the idempotency layer's saved result.
    pub replayed: bool,
    /// When it arrived.
    pub at: Instant,
}

struct Record {
    intent: Intent,
    capture_method: String,
    description: Option<String>,
    created: i64,
    client_secret: String,
    latest_charge: Option<String>,
    last_payment_error: Option<Value>,
    amount_capturable: i64,
    amount_received: i64,
    refunded_amount: i64,
    canceled_at: Option<i64>,
    cancellation_reason: Option<String>,
}

#[derive(Clone)]
struct Saved {
    status: u16,
    body: String,
}

struct KeyEntry {
    method: String,
    path: String,
    params: BTreeMap<String, String>,
    /// `None` while the first request is still executing.
    saved: Option<Saved>,
}

#[derive(Default)]
struct State {
    script: VecDeque<StripeFault>,
    latency: Duration,
    intents: Vec<Record>,
    refunds: Vec<Value>,
    keys: HashMap<String, KeyEntry>,
    requests: Vec<StripeRequest>,
}

pub struct FakeStripe {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    port: FakePort,
}

impl FakeStripe {
    /// Starts answering on a fresh port.
    pub async fn start() -> FakeStripe {
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let handler: Handler = Arc::new(move |req| Box::pin(handle(shared.clone(), req)));
        let port = FakePort::start(handler).await;
        FakeStripe {
            addr: port.addr,
            state,
            port,
        }
    }

    /// Reserves a port but refuses connections until [`FakeStripe::restore`].
    pub async fn start_refusing() -> FakeStripe {
        let f = FakeStripe::start().await;
        f.refuse();
        f
    }

    /// `http://127.0.0.1:PORT`, the `stripe.api_base` to configure.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes the port: new connections are refused, open ones are cut. Requests already
    /// executing finish executing (their PI is created), as on a real server.
    pub fn refuse(&self) {
        self.port.refuse();
    }

    /// Opens the same port again.
    pub async fn restore(&self) {
        self.port.restore().await;
    }

    /// One-shot faults, applied to authenticated POSTs in order of arrival.
    pub fn script(&self, faults: impl IntoIterator<Item = StripeFault>) {
        self.state.lock().unwrap().script.extend(faults);
    }

    /// Added before answering every request. For a POST that executes, it is spent after
    /// its idempotency key has been marked in progress (so a concurrent retry gets 409).
    /// Requests already waiting follow a change: lowered, they finish sooner.
    pub fn set_latency(&self, d: Duration) {
        self.state.lock().unwrap().latency = d;
    }

    /// Every PaymentIntent created, in order.
    pub fn intents(&self) -> Vec<Intent> {
        let s = self.state.lock().unwrap();
        s.intents.iter().map(|r| r.intent.clone()).collect()
    }

    pub fn intent(&self, id: &str) -> Option<Intent> {
        self.intents().into_iter().find(|i| i.id == id)
    }

    /// PaymentIntents created by requests with this `Idempotency-Key`.
    pub fn intents_for_key(&self, key: &str) -> usize {
        self.intents()
            .iter()
            .filter(|i| i.idempotency_key.as_deref() == Some(key))
            .count()
    }

    /// PaymentIntents whose `metadata[posedge_payment_id]` is this.
    pub fn intents_for_payment(&self, posedge_payment_id: &str) -> usize {
        self.intents()
            .iter()
            .filter(|i| {
                i.metadata.get("posedge_payment_id").map(String::as_str) == Some(posedge_payment_id)
            })
            .count()
    }

    /// Every refund object created, in order.
    pub fn refunds(&self) -> Vec<Value> {
        self.state.lock().unwrap().refunds.clone()
    }

    /// Every request received, in order of arrival.
    pub fn requests(&self) -> Vec<StripeRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// POSTs received, in order of arrival.
    pub fn posts(&self) -> Vec<StripeRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Serving

struct Parsed {
    method: String,
    path: String,
    auth: Option<String>,
    key: Option<String>,
    form: BTreeMap<String, String>,
}

struct Answer {
    status: u16,
    body: String,
    replayed: bool,
    should_not_retry: bool,
    drop: bool,
}

impl Answer {
    fn json(status: u16, body: &Value) -> Answer {
        Answer {
            status,
            body: body.to_string(),
            replayed: false,
            should_not_retry: false,
            drop: false,
        }
    }
}

enum Plan {
    Answer(Answer),
    Execute {
        key: Option<String>,
        fault: Option<StripeFault>,
    },
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let auth = header("authorization");
    let key = header("idempotency-key");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let form = if method == "GET" {
        parse_form(&query)
    } else {
        parse_form(&String::from_utf8_lossy(&body))
    };
    let index = {
        let mut s = state.lock().unwrap();
        s.requests.push(StripeRequest {
            method: method.clone(),
            path: path.clone(),
            query,
            idempotency_key: key.clone(),
            form: form.clone(),
            answered: None,
            replayed: false,
            at,
        });
        s.requests.len() - 1
    };
    let echo_key = key.clone().filter(|_| method == "POST");
    let parsed = Parsed {
        method,
        path,
        auth,
        key,
        form,
    };
    // Executes in its own task: a client hanging up does not stop a request mid-execution
    // (nor leave its idempotency key "in progress" forever).
    let answer = tokio::spawn(async move {
        let answer = process(&state, &parsed).await;
        let mut s = state.lock().unwrap();
        let r = &mut s.requests[index];
        r.answered = (!answer.drop).then_some(answer.status);
        r.replayed = answer.replayed;
        answer
    })
    .await
    .map_err(std::io::Error::other)?;
    if answer.drop {
        return Err(std::io::Error::other("scripted drop after execution"));
    }
    let mut res = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap())
        .header("content-type", "application/json")
        .header("request-id", format!("req_{}", random(14)));
    if let Some(k) = echo_key {
        res = res.header("idempotency-key", k);
    }
    if answer.replayed {
        res = res.header("idempotent-replayed", "true");
    }
    if answer.should_not_retry {
        res = res.header("stripe-should-retry", "false");
    }
    Ok(res.body(Full::new(Bytes::from(answer.body))).unwrap())
}

async fn process(state: &Mutex<State>, r: &Parsed) -> Answer {
    let plan = plan(&mut state.lock().unwrap(), r);
    // The latency in force now, not at arrival: lowering it lets waiting requests finish
    // (a dark link that comes back delivers what Stripe had been working on).
    let arrived = Instant::now();
    loop {
        let latency = state.lock().unwrap().latency;
        let waited = arrived.elapsed();
        if waited >= latency {
            break;
        }
        tokio::time::sleep((latency - waited).min(Duration::from_millis(50))).await;
    }
    match plan {
        Plan::Answer(a) => a,
        Plan::Execute { key, fault } => {
            if let Some(StripeFault::Stall(d)) = &fault {
                tokio::time::sleep(*d).await;
            }
            let mut s = state.lock().unwrap();
            execute(&mut s, r, key, fault)
        }
    }
}

/// Everything decided on arrival: authentication, pre-execution faults, the idempotency
/// layer (replay, 409, mismatch, or reserving the key).
fn plan(s: &mut State, r: &Parsed) -> Plan {
    match r.auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
        Some(k) if k.starts_with("sk_") || k.starts_with("rk_") => {}
        Some(k) => {
            return Plan::Answer(Answer::json(
                401,
                &json!({"error": {
                    "type": "invalid_request_error",
                    "message": format!("Invalid API Key provided: {}", redact(k)),
                }}),
            ))
        }
        None => {
            return Plan::Answer(Answer::json(
                401,
                &json!({"error": {
                    "type": "invalid_request_error",
                    "message": "You did not provide an API key. You need to provide your API key \
                                in the Authorization header, using Bearer auth (e.g. \
                                'Authorization: Bearer YOUR_SECRET_KEY').",
                }}),
            ))
        }
    }
    if r.method != "POST" {
        return Plan::Execute {
            key: None,
            fault: None,
        };
    }
    let fault = s.script.pop_front();
    match &fault {
        Some(StripeFault::RateLimited) => {
            return Plan::Answer(Answer::json(
                429,
                &json!({"error": {
                    "type": "invalid_request_error",
                    "code": "rate_limit",
                    "message": "Request rate limit exceeded. You can learn more about rate limits \
                                here https://stripe.com/docs/rate-limits.",
                    "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
                }}),
            ))
        }
        Some(StripeFault::Status(st)) => {
            return Plan::Answer(Answer::json(*st, &scripted_error(*st)))
        }
        Some(StripeFault::ShouldNotRetry(st)) => {
            let mut a = Answer::json(*st, &scripted_error(*st));
            a.should_not_retry = true;
            return Plan::Answer(a);
        }
        _ => {}
    }
    let Some(key) = r.key.clone() else {
        return Plan::Execute { key: None, fault };
    };
    if key.is_empty() || key.len() > 255 {
        return Plan::Answer(Answer::json(
            400,
            &invalid(
                None,
                None,
                "Invalid idempotency key: must be between 1 and 255 characters long.".into(),
            ),
        ));
    }
    match s.keys.get(&key) {
        Some(e) if e.method != r.method || e.path != r.path => Plan::Answer(Answer::json(
            400,
            &idempotency_error(format!(
                "Keys for idempotent requests can only be used for the same endpoint they were \
                 first used for ('{} {}' vs '{} {}'). Try using a key other than '{key}' if you \
                 meant to execute a different request.",
                r.method, r.path, e.method, e.path
            )),
        )),
        Some(e) if e.params != r.form => Plan::Answer(Answer::json(
            400,
            &idempotency_error(format!(
                "Keys for idempotent requests can only be used with the same parameters they \
                 were first used with. Try using a key other than '{key}' if you meant to \
                 execute a different request."
            )),
        )),
        Some(KeyEntry { saved: None, .. }) => Plan::Answer(Answer::json(
            409,
            &key_in_use(format!(
                "There is currently another in-progress request using this Idempotent Key (that \
                 probably means you submitted twice, and the other request is still going \
                 through): {key}. Please try again later."
            )),
        )),
        Some(KeyEntry {
            saved: Some(saved), ..
        }) => Plan::Answer(Answer {
            status: saved.status,
            body: saved.body.clone(),
            replayed: true,
            should_not_retry: false,
            drop: false,
        }),
        None => {
            s.keys.insert(
                key.clone(),
                KeyEntry {
                    method: r.method.clone(),
                    path: r.path.clone(),
                    params: r.form.clone(),
                    saved: None,
                },
            );
            Plan::Execute {
                key: Some(key),
                fault,
            }
        }
    }
}

/// What an endpoint did: `executed` results are saved for idempotency, rejected ones (failed
/// validation, unknown URL) are not.
struct Outcome {
    status: u16,
    body: Value,
    executed: bool,
}

fn executed(status: u16, body: Value) -> Outcome {
    Outcome {
        status,
        body,
        executed: true,
    }
}

fn rejected(status: u16, body: Value) -> Outcome {
    Outcome {
        status,
        body,
        executed: false,
    }
}

fn execute(s: &mut State, r: &Parsed, key: Option<String>, fault: Option<StripeFault>) -> Answer {
    let out = route(s, r, key.as_deref());
    let (status, body) = if out.executed && matches!(fault, Some(StripeFault::ExecuteThen500)) {
        (500, scripted_error(500).to_string())
    } else {
        (out.status, out.body.to_string())
    };
    if let Some(k) = key {
        if out.executed {
            if let Some(e) = s.keys.get_mut(&k) {
                e.saved = Some(Saved {
                    status,
                    body: body.clone(),
                });
            }
        } else {
            s.keys.remove(&k);
        }
    }
    Answer {
        status,
        body,
        replayed: false,
        should_not_retry: false,
        drop: matches!(fault, Some(StripeFault::ExecuteThenDrop)),
    }
}

fn route(s: &mut State, r: &Parsed, key: Option<&str>) -> Outcome {
    let segs: Vec<&str> = r.path.split('/').filter(|p| !p.is_empty()).collect();
    match (r.method.as_str(), segs.as_slice()) {
        ("POST", ["v1", "payment_intents"]) => create_intent(s, &r.form, key),
        ("GET", ["v1", "payment_intents"]) => list_intents(s, &r.form),
        ("GET", ["v1", "payment_intents", "search"]) => search_intents(s, &r.form),
        ("GET", ["v1", "payment_intents", id]) => match find(s, id) {
            Some(i) => executed(200, intent_json(&s.intents[i])),
            None => no_such_intent(id),
        },
        ("POST", ["v1", "payment_intents", id, "capture"]) => capture(s, id, &r.form),
        ("POST", ["v1", "payment_intents", id, "cancel"]) => cancel(s, id, &r.form),
        ("POST", ["v1", "refunds"]) => refund(s, &r.form),
        _ => rejected(
            404,
            invalid(
                None,
                None,
                format!(
                    "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs or we \
                     can help at https://support.stripe.com/.",
                    r.method, r.path
                ),
            ),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Endpoints

const CARDS_OK: &[&str] = &[
    "pm_card_visa",
    "pm_card_visa_debit",
    "pm_card_mastercard",
    "pm_card_mastercard_debit",
    "pm_card_mastercard_prepaid",
    "pm_card_amex",
    "pm_card_discover",
    "pm_card_diners",
    "pm_card_jcb",
    "pm_card_unionpay",
    "pm_card_us",
    "pm_card_bypassPending",
];

/// Test cards that decline: (payment method, code, decline_code, message).
const CARDS_DECLINED: &[(&str, &str, Option<&str>, &str)] = &[
    (
        "pm_card_chargeDeclined",
        "card_declined",
        Some("generic_decline"),
        "Your card was declined.",
    ),
    (
        "pm_card_visa_chargeDeclined",
        "card_declined",
        Some("generic_decline"),
        "Your card was declined.",
    ),
    (
        "pm_card_chargeCustomerFail",
        "card_declined",
        Some("generic_decline"),
        "Your card was declined.",
    ),
    (
        "pm_card_chargeDeclinedInsufficientFunds",
        "card_declined",
        Some("insufficient_funds"),
        "Your card has insufficient funds.",
    ),
    (
        "pm_card_chargeDeclinedLostCard",
        "card_declined",
        Some("lost_card"),
        "Your card was declined.",
    ),
    (
        "pm_card_chargeDeclinedStolenCard",
        "card_declined",
        Some("stolen_card"),
        "Your card was declined.",
    ),
    (
        "pm_card_chargeDeclinedExpiredCard",
        "expired_card",
        None,
        "Your card has expired.",
    ),
    (
        "pm_card_chargeDeclinedIncorrectCvc",
        "incorrect_cvc",
        None,
        "Your card's security code is incorrect.",
    ),
    (
        "pm_card_chargeDeclinedProcessingError",
        "processing_error",
        None,
        "An error occurred while processing your card. Try again in a little bit.",
    ),
];

/// Create parameters Stripe knows (others get 400 `parameter_unknown`, as on Stripe).
const CREATE_PARAMS: &[&str] = &[
    "amount",
    "currency",
    "payment_method",
    "confirm",
    "capture_method",
    "description",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "receipt_email",
    "customer",
    "off_session",
    "setup_future_usage",
    "confirmation_method",
    "error_on_requires_action",
    "return_url",
    "on_behalf_of",
    "transfer_group",
    "use_stripe_sdk",
    "mandate",
    "application_fee_amount",
];
const CREATE_PREFIXES: &[&str] = &[
    "metadata[",
    "expand[",
    "payment_method_types[",
    "payment_method_options[",
    "automatic_payment_methods[",
    "shipping[",
    "transfer_data[",
];

fn create_intent(s: &mut State, form: &BTreeMap<String, String>, key: Option<&str>) -> Outcome {
    if let Some(bad) = unknown_param(form, CREATE_PARAMS, CREATE_PREFIXES) {
        return bad;
    }
    let amount = match form.get("amount") {
        None => return missing("amount"),
        Some(a) => match a.parse::<i64>() {
            Ok(n) if n >= 1 => n,
            Ok(_) => {
                return rejected(
                    400,
                    invalid(
                        Some("parameter_invalid_integer"),
                        Some("amount"),
                        "This value must be greater than or equal to 1.".into(),
                    ),
                )
            }
            Err(_) => {
                return rejected(
                    400,
                    invalid(
                        Some("parameter_invalid_integer"),
                        Some("amount"),
                        format!("Invalid integer: {a}"),
                    ),
                )
            }
        },
    };
    let currency = match form.get("currency") {
        None => return missing("currency"),
        Some(c) if c.len() == 3 && c.chars().all(|ch| ch.is_ascii_alphabetic()) => {
            c.to_ascii_lowercase()
        }
        Some(c) => {
            return rejected(
                400,
                invalid(None, Some("currency"), format!("Invalid currency: {c}.")),
            )
        }
    };
    let confirm = match form.get("confirm").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => return invalid_boolean("confirm", v),
    };
    let capture_method =
        match form.get("capture_method").map(String::as_str) {
            None => "automatic".to_string(),
            Some(m @ ("automatic" | "automatic_async" | "manual")) => m.to_string(),
            Some(_) => return rejected(
                400,
                invalid(
                    Some("parameter_invalid_string"),
                    Some("capture_method"),
                    "Invalid capture_method: must be one of automatic, automatic_async, or manual"
                        .into(),
                ),
            ),
        };
    let pm = form.get("payment_method").cloned();
    if confirm && pm.is_none() {
        return rejected(
            400,
            invalid(
                Some("payment_intent_unexpected_state"),
                None,
                "You cannot confirm this PaymentIntent because it's missing a payment method. \
                 To confirm the PaymentIntent, provide a payment_method."
                    .into(),
            ),
        );
    }
    let declined = pm
        .as_deref()
        .and_then(|p| CARDS_DECLINED.iter().find(|d| d.0 == p));
    if let Some(p) = &pm {
        if declined.is_none() && !CARDS_OK.contains(&p.as_str()) {
            // Started executing (the lookup happens in the endpoint): saved.
            return executed(
                400,
                invalid(
                    Some("resource_missing"),
                    Some("payment_method"),
                    format!("No such PaymentMethod: '{p}'"),
                ),
            );
        }
    }
    let metadata = metadata_of(form);
    let id = format!("pi_{}", random(24));
    let status = match (&pm, confirm, declined) {
        (None, _, _) => "requires_payment_method",
        (Some(_), false, _) => "requires_confirmation",
        (Some(_), true, Some(_)) => "requires_payment_method",
        (Some(_), true, None) if capture_method == "manual" => "requires_capture",
        (Some(_), true, None) => "succeeded",
    };
    let charged = confirm && pm.is_some();
    let mut record = Record {
        intent: Intent {
            id: id.clone(),
            amount,
            currency,
            status: status.to_string(),
            payment_method: pm.clone().unwrap_or_default(),
            metadata,
            idempotency_key: key.map(str::to_string),
            refunded: false,
        },
        capture_method,
        description: form.get("description").cloned(),
        created: now(),
        client_secret: format!("{id}_secret_{}", random(25)),
        latest_charge: charged.then(|| format!("ch_{}", random(24))),
        last_payment_error: None,
        amount_capturable: if status == "requires_capture" {
            amount
        } else {
            0
        },
        amount_received: if status == "succeeded" { amount } else { 0 },
        refunded_amount: 0,
        canceled_at: None,
        cancellation_reason: None,
    };
    if let (true, Some((pm_id, code, decline_code, message))) = (confirm, declined) {
        let mut err = json!({
            "type": "card_error",
            "code": code,
            "message": message,
            "charge": record.latest_charge,
            "doc_url": format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-")),
            "payment_method": {"id": pm_id, "object": "payment_method", "type": "card"},
        });
        if let Some(d) = decline_code {
            err["decline_code"] = json!(d);
        }
        record.last_payment_error = Some(err.clone());
        err["payment_intent"] = intent_json(&record);
        s.intents.push(record);
        return executed(402, json!({ "error": err }));
    }
    let body = intent_json(&record);
    s.intents.push(record);
    executed(200, body)
}

fn list_intents(s: &State, q: &BTreeMap<String, String>) -> Outcome {
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let data: Vec<Value> = s.intents.iter().rev().map(intent_json).collect();
    let has_more = data.len() > limit;
    executed(
        200,
        json!({
            "object": "list",
            "url": "/v1/payment_intents",
            "has_more": has_more,
            "data": data.into_iter().take(limit).collect::<Vec<_>>(),
        }),
    )
}

fn search_intents(s: &State, q: &BTreeMap<String, String>) -> Outcome {
    let Some(query) = q.get("query") else {
        return missing("query");
    };
    let Some((key, value)) = parse_metadata_query(query) else {
        return rejected(
            400,
            invalid(
                None,
                Some("query"),
                format!(
                    "The query you provided is invalid (this fake understands only \
                     metadata['KEY']:'VALUE'): {query}"
                ),
            ),
        );
    };
    let data: Vec<Value> = s
        .intents
        .iter()
        .rev()
        .filter(|r| r.intent.metadata.get(&key) == Some(&value))
        .map(intent_json)
        .collect();
    executed(
        200,
        json!({
            "object": "search_result",
            "url": "/v1/payment_intents/search",
            "has_more": false,
            "next_page": null,
            "data": data,
        }),
    )
}

fn capture(s: &mut State, id: &str, form: &BTreeMap<String, String>) -> Outcome {
    if let Some(bad) = unknown_param(
        form,
        &[
            "amount_to_capture",
            "statement_descriptor",
            "statement_descriptor_suffix",
        ],
        &["expand[", "metadata["],
    ) {
        return bad;
    }
    let Some(i) = find(s, id) else {
        return no_such_intent(id);
    };
    let r = &mut s.intents[i];
    if r.intent.status != "requires_capture" {
        return executed(
            400,
            unexpected_state(
                r,
                format!(
                    "This PaymentIntent could not be captured because it has a status of {}. Only \
                     a PaymentIntent with one of the following statuses may be captured: \
                     requires_capture.",
                    r.intent.status
                ),
            ),
        );
    }
    let amount = match form.get("amount_to_capture") {
        None => r.amount_capturable,
        Some(a) => match a.parse::<i64>() {
            Ok(n) if (1..=r.amount_capturable).contains(&n) => n,
            _ => {
                return rejected(
                    400,
                    invalid(
                        Some("amount_too_large"),
                        Some("amount_to_capture"),
                        format!(
                            "The amount_to_capture must be between 1 and {}.",
                            r.amount_capturable
                        ),
                    ),
                )
            }
        },
    };
    r.amount_received = amount;
    r.amount_capturable = 0;
    r.intent.status = "succeeded".into();
    executed(200, intent_json(r))
}

fn cancel(s: &mut State, id: &str, form: &BTreeMap<String, String>) -> Outcome {
    if let Some(bad) = unknown_param(form, &["cancellation_reason"], &["expand["]) {
        return bad;
    }
    let reason = form.get("cancellation_reason").cloned();
    if let Some(r) = &reason {
        if ![
            "duplicate",
            "fraudulent",
            "requested_by_customer",
            "abandoned",
        ]
        .contains(&r.as_str())
        {
            return rejected(
                400,
                invalid(
                    Some("parameter_invalid_string"),
                    Some("cancellation_reason"),
                    "Invalid cancellation_reason: must be one of duplicate, fraudulent, \
                     requested_by_customer, or abandoned"
                        .into(),
                ),
            );
        }
    }
    let Some(i) = find(s, id) else {
        return no_such_intent(id);
    };
    let r = &mut s.intents[i];
    let cancellable = [
        "requires_payment_method",
        "requires_capture",
        "requires_confirmation",
        "requires_action",
        "processing",
    ];
    if !cancellable.contains(&r.intent.status.as_str()) {
        return executed(
            400,
            unexpected_state(
                r,
                format!(
                    "You cannot cancel this PaymentIntent because it has a status of {}. Only a \
                     PaymentIntent with one of the following statuses may be canceled: {}.",
                    r.intent.status,
                    cancellable.join(", ")
                ),
            ),
        );
    }
    r.intent.status = "canceled".into();
    r.amount_capturable = 0;
    r.canceled_at = Some(now());
    r.cancellation_reason = reason;
    executed(200, intent_json(r))
}

fn refund(s: &mut State, form: &BTreeMap<String, String>) -> Outcome {
    if let Some(bad) = unknown_param(
        form,
        &["payment_intent", "charge", "amount", "reason"],
        &["metadata[", "expand["],
    ) {
        return bad;
    }
    let i = match (form.get("payment_intent"), form.get("charge")) {
        (Some(pi), _) => match find(s, pi) {
            Some(i) => i,
            None => return no_such_intent(pi),
        },
        (None, Some(ch)) => {
            match s
                .intents
                .iter()
                .position(|r| r.latest_charge.as_deref() == Some(ch.as_str()))
            {
                Some(i) => i,
                None => {
                    return executed(
                        404,
                        invalid(
                            Some("resource_missing"),
                            Some("charge"),
                            format!("No such charge: '{ch}'"),
                        ),
                    )
                }
            }
        }
        (None, None) => {
            return rejected(
                400,
                invalid(
                    Some("parameter_missing"),
                    None,
                    "One of the following params should be provided for this request: \
                     payment_intent or charge."
                        .into(),
                ),
            )
        }
    };
    if let Some(r) = form.get("reason") {
        if !["duplicate", "fraudulent", "requested_by_customer"].contains(&r.as_str()) {
            return rejected(
                400,
                invalid(
                    Some("parameter_invalid_string"),
                    Some("reason"),
                    "Invalid reason: must be one of duplicate, fraudulent, or \
                     requested_by_customer"
                        .into(),
                ),
            );
        }
    }
    let r = &mut s.intents[i];
    if r.intent.status != "succeeded" {
        return executed(
            400,
            unexpected_state(
                r,
                format!(
                    "This PaymentIntent ({}) does not have a successful charge to refund.",
                    r.intent.id
                ),
            ),
        );
    }
    let charge = r.latest_charge.clone().unwrap_or_default();
    let remaining = r.amount_received - r.refunded_amount;
    if remaining <= 0 {
        return executed(
            400,
            invalid(
                Some("charge_already_refunded"),
                None,
                format!("Charge {charge} has already been refunded."),
            ),
        );
    }
    let amount = match form.get("amount") {
        None => remaining,
        Some(a) => match a.parse::<i64>() {
            Ok(n) if n >= 1 && n <= remaining => n,
            Ok(n) if n > remaining => {
                return executed(
                    400,
                    invalid(
                        Some("amount_too_large"),
                        Some("amount"),
                        format!(
                            "Refund amount ({n}) is greater than unrefunded amount on charge \
                             ({remaining})"
                        ),
                    ),
                )
            }
            _ => {
                return rejected(
                    400,
                    invalid(
                        Some("parameter_invalid_integer"),
                        Some("amount"),
                        format!("Invalid integer: {a}"),
                    ),
                )
            }
        },
    };
    r.refunded_amount += amount;
    r.intent.refunded = r.refunded_amount >= r.amount_received;
    let refund = json!({
        "id": format!("re_{}", random(24)),
        "object": "refund",
        "amount": amount,
        "currency": r.intent.currency,
        "payment_intent": r.intent.id,
        "charge": charge,
        "status": "succeeded",
        "reason": form.get("reason"),
        "metadata": metadata_of(form),
        "created": now(),
    });
    s.refunds.push(refund.clone());
    executed(200, refund)
}

// ---------------------------------------------------------------------------------------
// Helpers

fn find(s: &State, id: &str) -> Option<usize> {
    s.intents.iter().position(|r| r.intent.id == id)
}

fn intent_json(r: &Record) -> Value {
    let i = &r.intent;
    let pm = (!i.payment_method.is_empty() && i.status != "requires_payment_method")
        .then(|| i.payment_method.clone());
    json!({
        "id": i.id,
        "object": "payment_intent",
        "amount": i.amount,
        "amount_capturable": r.amount_capturable,
        "amount_received": r.amount_received,
        "currency": i.currency,
        "status": i.status,
        "payment_method": pm,
        "payment_method_types": ["card"],
        "metadata": i.metadata,
        "latest_charge": r.latest_charge,
        "last_payment_error": r.last_payment_error,
        "capture_method": r.capture_method,
        "confirmation_method": "automatic",
        "client_secret": r.client_secret,
        "description": r.description,
        "canceled_at": r.canceled_at,
        "cancellation_reason": r.cancellation_reason,
        "created": r.created,
        "livemode": false,
    })
}

fn metadata_of(form: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    form.iter()
        .filter_map(|(k, v)| {
            let inner = k.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((inner.to_string(), v.clone()))
        })
        .collect()
}

/// `metadata['KEY']:'VALUE'` (single or double quotes) → (KEY, VALUE).
fn parse_metadata_query(q: &str) -> Option<(String, String)> {
    fn quoted(s: &str) -> Option<(&str, &str)> {
        let quote = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let rest = &s[1..];
        let end = rest.find(quote)?;
        Some((&rest[..end], &rest[end + 1..]))
    }
    let rest = q.trim().strip_prefix("metadata[")?;
    let (key, rest) = quoted(rest)?;
    let rest = rest.strip_prefix("]:")?;
    let (value, rest) = quoted(rest.trim_start())?;
    rest.trim()
        .is_empty()
        .then(|| (key.to_string(), value.to_string()))
}

fn unknown_param(
    form: &BTreeMap<String, String>,
    known: &[&str],
    prefixes: &[&str],
) -> Option<Outcome> {
    let bad = form
        .keys()
        .find(|k| !known.contains(&k.as_str()) && !prefixes.iter().any(|p| k.starts_with(p)))?;
    Some(rejected(
        400,
        invalid(
            Some("parameter_unknown"),
            Some(bad),
            format!("Received unknown parameter: {bad}"),
        ),
    ))
}

fn missing(param: &str) -> Outcome {
    rejected(
        400,
        invalid(
            Some("parameter_missing"),
            Some(param),
            format!("Missing required param: {param}."),
        ),
    )
}

fn invalid_boolean(param: &str, v: &str) -> Outcome {
    rejected(
        400,
        invalid(
            Some("parameter_invalid_boolean"),
            Some(param),
            format!("Invalid boolean: {v}"),
        ),
    )
}

fn no_such_intent(id: &str) -> Outcome {
    executed(
        404,
        invalid(
            Some("resource_missing"),
            Some("intent"),
            format!("No such payment_intent: '{id}'"),
        ),
    )
}

fn unexpected_state(r: &Record, message: String) -> Value {
    let mut v = invalid(Some("payment_intent_unexpected_state"), None, message);
    v["error"]["payment_intent"] = intent_json(r);
    v
}

fn invalid(code: Option<&str>, param: Option<&str>, message: String) -> Value {
    let mut e = json!({"type": "invalid_request_error", "message": message});
    if let Some(c) = code {
        e["code"] = json!(c);
        e["doc_url"] = json!(format!(
            "https://stripe.com/docs/error-codes/{}",
            c.replace('_', "-")
        ));
    }
    if let Some(p) = param {
        e["param"] = json!(p);
    }
    json!({ "error": e })
}

fn idempotency_error(message: String) -> Value {
    json!({"error": {"type": "idempotency_error", "message": message}})
}

/// Stripe's answer while the first request with a key is still executing.
fn key_in_use(message: String) -> Value {
    json!({"error": {"type": "idempotency_error", "code": "idempotency_key_in_use", "message": message}})
}

/// The body of a scripted status: Stripe's shape, the type Stripe uses for that status.
fn scripted_error(status: u16) -> Value {
    let (kind, code, message) = match status {
        400 | 404 => ("invalid_request_error", None, "Scripted invalid request."),
        401 => ("invalid_request_error", None, "Invalid API Key provided."),
        402 => (
            "card_error",
            Some("card_declined"),
            "Your card was declined.",
        ),
        409 => (
            "invalid_request_error",
            Some("lock_timeout"),
            "This object cannot be accessed right now because another API request or Stripe \
             process is currently accessing it.",
        ),
        429 => (
            "invalid_request_error",
            Some("rate_limit"),
            "Request rate limit exceeded.",
        ),
        _ => (
            "api_error",
            None,
            "An unknown error occurred while processing your request (scripted).",
        ),
    };
    let mut e = json!({"type": kind, "message": message});
    if let Some(c) = code {
        e["code"] = json!(c);
    }
    json!({ "error": e })
}

fn redact(k: &str) -> String {
    let tail: String = k
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk_***{tail}")
}

fn random(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `application/x-www-form-urlencoded` → map; keys are kept literally (`metadata[k]`); a
/// repeated key keeps its last value.
fn parse_form(s: &str) -> BTreeMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------
// Self-tests: the fake keeps Stripe's rules.

const SK: &str = "sk_test_fake_stripe";

struct Reply {
    status: u16,
    replayed: bool,
    should_retry: Option<String>,
    body: Value,
}

async fn post(
    f: &FakeStripe,
    path: &str,
    key: Option<&str>,
    form: &[(&str, &str)],
) -> Result<Reply, reqwest::Error> {
    send(&reqwest::Client::new(), f, path, key, form).await
}

async fn send(
    client: &reqwest::Client,
    f: &FakeStripe,
    path: &str,
    key: Option<&str>,
    form: &[(&str, &str)],
) -> Result<Reply, reqwest::Error> {
    let mut req = client
        .post(format!("{}{path}", f.base_url()))
        .bearer_auth(SK)
        .form(form);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    reply(req.send().await?).await
}

async fn get(f: &FakeStripe, path_and_query: &str) -> Reply {
    let res = reqwest::Client::new()
        .get(format!("{}{path_and_query}", f.base_url()))
        .bearer_auth(SK)
        .send()
        .await
        .unwrap();
    reply(res).await.unwrap()
}

async fn reply(res: reqwest::Response) -> Result<Reply, reqwest::Error> {
    let status = res.status().as_u16();
    let header = |n: &str| {
        res.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let replayed = header("idempotent-replayed").as_deref() == Some("true");
    let should_retry = header("stripe-should-retry");
    let body = res.json().await?;
    Ok(Reply {
        status,
        replayed,
        should_retry,
        body,
    })
}

fn visa(payment: &str) -> Vec<(&'static str, String)> {
    vec![
        ("amount", "430".to_string()),
        ("currency", "usd".to_string()),
        ("payment_method", "pm_card_visa".to_string()),
        ("confirm", "true".to_string()),
        ("metadata[posedge_payment_id]", payment.to_string()),
    ]
}

fn borrow<'a>(form: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    form.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn create(f: &FakeStripe, key: Option<&str>, payment: &str) -> Reply {
    post(f, "/v1/payment_intents", key, &borrow(&visa(payment)))
        .await
        .unwrap()
}

#[tokio::test]
async fn fake_stripe_replays_the_first_answer_for_a_reused_key() {
    let f = FakeStripe::start().await;
    let first = create(&f, Some("k-1"), "pay-1").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(!first.replayed);
    assert_eq!(first.body["object"], "payment_intent");
    assert_eq!(first.body["status"], "succeeded");
    assert_eq!(first.body["amount"], 430);
    assert_eq!(first.body["metadata"]["posedge_payment_id"], "pay-1");
    assert!(first.body["latest_charge"]
        .as_str()
        .unwrap()
        .starts_with("ch_"));
    let id = first.body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("pi_"));

    let again = create(&f, Some("k-1"), "pay-1").await;
    assert_eq!(again.status, 200);
    assert!(again.replayed, "a replay carries Idempotent-Replayed: true");
    assert_eq!(again.body, first.body, "the saved body is replayed as is");
    assert_eq!(f.intents().len(), 1);
    assert_eq!(f.intents_for_key("k-1"), 1);
    assert_eq!(f.intents_for_payment("pay-1"), 1);
    assert_eq!(f.intents()[0].id, id);

    // Without a key, nothing protects against a duplicate.
    create(&f, None, "pay-1").await;
    assert_eq!(f.intents_for_payment("pay-1"), 2);
    let posts = f.posts();
    assert_eq!(posts.len(), 3);
    assert_eq!(posts[0].idempotency_key.as_deref(), Some("k-1"));
    assert_eq!(posts[0].form["metadata[posedge_payment_id]"], "pay-1");
    assert_eq!(posts[0].answered, Some(200));
    assert!(!posts[0].replayed && posts[1].replayed);
}

#[tokio::test]
async fn fake_stripe_answers_409_to_a_same_key_request_still_executing() {
    let f = FakeStripe::start().await;
    f.set_latency(Duration::from_millis(300));
    let (a, b) = tokio::join!(create(&f, Some("k-c"), "pay-c"), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        create(&f, Some("k-c"), "pay-c").await
    });
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(b.status, 409, "{}", b.body);
    assert_eq!(b.body["error"]["type"], "idempotency_error");
    assert_eq!(f.intents().len(), 1);

    // Once the first has finished, the key replays its answer.
    f.set_latency(Duration::ZERO);
    let c = create(&f, Some("k-c"), "pay-c").await;
    assert_eq!((c.status, c.replayed), (200, true));
    assert_eq!(c.body["id"], a.body["id"]);
    assert_eq!(f.intents_for_key("k-c"), 1);
}

#[tokio::test]
async fn fake_stripe_rejects_a_reused_key_with_different_parameters() {
    let f = FakeStripe::start().await;
    assert_eq!(create(&f, Some("k-p"), "pay-p").await.status, 200);
    let other = create(&f, Some("k-p"), "pay-q").await;
    assert_eq!(other.status, 400, "{}", other.body);
    assert_eq!(other.body["error"]["type"], "idempotency_error");
    assert!(other.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("same parameters"));

    let id = f.intents()[0].id.clone();
    let elsewhere = post(&f, "/v1/refunds", Some("k-p"), &[("payment_intent", &id)])
        .await
        .unwrap();
    assert_eq!(elsewhere.status, 400, "{}", elsewhere.body);
    assert_eq!(elsewhere.body["error"]["type"], "idempotency_error");
    assert_eq!(f.intents().len(), 1);
    assert!(!f.intents()[0].refunded);
    assert_eq!(f.intents_for_payment("pay-q"), 0);
}

#[tokio::test]
async fn fake_stripe_replays_a_500_saved_after_execution() {
    let f = FakeStripe::start().await;
    f.script([StripeFault::ExecuteThen500]);
    let first = create(&f, Some("k-500"), "pay-500").await;
    assert_eq!(first.status, 500);
    assert_eq!(first.body["error"]["type"], "api_error");
    assert_eq!(f.intents().len(), 1, "the PI was created before the 500");

    let retry = create(&f, Some("k-500"), "pay-500").await;
    assert_eq!((retry.status, retry.replayed), (500, true));
    assert_eq!(f.intents_for_key("k-500"), 1);
    assert_eq!(f.intents_for_payment("pay-500"), 1);

    // The way out is to look the PI up by its metadata.
    let found = get(
        &f,
        "/v1/payment_intents/search?query=metadata%5B%27posedge_payment_id%27%5D%3A%27pay-500%27",
    )
    .await;
    assert_eq!(
        found.body["data"][0]["id"].as_str().unwrap(),
        f.intents()[0].id
    );
}

#[tokio::test]
async fn fake_stripe_does_not_save_an_answer_given_before_execution() {
    let f = FakeStripe::start().await;
    f.script([
        StripeFault::Status(500),
        StripeFault::RateLimited,
        StripeFault::ShouldNotRetry(503),
    ]);
    let first = create(&f, Some("k-pre"), "pay-pre").await;
    assert_eq!(first.status, 500);
    assert_eq!(first.body["error"]["type"], "api_error");
    let limited = create(&f, Some("k-pre"), "pay-pre").await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body["error"]["code"], "rate_limit");
    assert!(!limited.replayed);
    let no_retry = create(&f, Some("k-pre"), "pay-pre").await;
    assert_eq!(no_retry.status, 503);
    assert_eq!(no_retry.should_retry.as_deref(), Some("false"));
    assert!(f.intents().is_empty());

    let retry = create(&f, Some("k-pre"), "pay-pre").await;
    assert_eq!((retry.status, retry.replayed), (200, false));
    assert_eq!(f.intents_for_key("k-pre"), 1);

    // A request failing validation is not saved either: the key stays usable.
    let missing = post(
        &f,
        "/v1/payment_intents",
        Some("k-val"),
        &[("currency", "usd"), ("payment_method", "pm_card_visa")],
    )
    .await
    .unwrap();
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["error"]["code"], "parameter_missing");
    assert_eq!(missing.body["error"]["param"], "amount");
    let fixed = create(&f, Some("k-val"), "pay-val").await;
    assert_eq!((fixed.status, fixed.replayed), (200, false));
    assert_eq!(f.intents().len(), 2);
}

#[tokio::test]
async fn fake_stripe_declines_with_402_and_a_decline_code() {
    let f = FakeStripe::start().await;
    for (pm, decline) in [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_visa_chargeDeclined", "generic_decline"),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "insufficient_funds",
        ),
    ] {
        let key = format!("k-{pm}");
        let form = [
            ("amount", "430"),
            ("currency", "usd"),
            ("payment_method", pm),
            ("confirm", "true"),
            ("metadata[posedge_payment_id]", pm),
        ];
        let r = post(&f, "/v1/payment_intents", Some(&key), &form)
            .await
            .unwrap();
        assert_eq!(r.status, 402, "{}", r.body);
        let e = &r.body["error"];
        assert_eq!(e["type"], "card_error");
        assert_eq!(e["code"], "card_declined");
        assert_eq!(e["decline_code"], decline);
        assert_eq!(e["payment_intent"]["status"], "requires_payment_method");
        assert_eq!(f.intents_for_payment(pm), 1, "a declined PI still exists");
        let again = post(&f, "/v1/payment_intents", Some(&key), &form)
            .await
            .unwrap();
        assert_eq!((again.status, again.replayed), (402, true));
        assert_eq!(f.intents_for_payment(pm), 1);
    }
    let unknown = post(
        &f,
        "/v1/payment_intents",
        None,
        &[
            ("amount", "430"),
            ("currency", "usd"),
            ("payment_method", "pm_nope"),
            ("confirm", "true"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.body["error"]["code"], "resource_missing");
    assert_eq!(f.intents().len(), 3);
    assert!(f
        .intents()
        .iter()
        .all(|i| i.status == "requires_payment_method"));
}

#[tokio::test]
async fn fake_stripe_finds_an_intent_by_metadata_search() {
    let f = FakeStripe::start().await;
    let one = create(&f, Some("k-s1"), "pay-s1").await;
    create(&f, Some("k-s2"), "pay-s2").await;
    for query in [
        "metadata['posedge_payment_id']:'pay-s1'",
        "metadata[\"posedge_payment_id\"]:\"pay-s1\"",
    ] {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/v1/payment_intents/search", f.base_url()),
            [("query", query)],
        )
        .unwrap();
        let found = get(&f, &format!("{}?{}", url.path(), url.query().unwrap())).await;
        assert_eq!(found.status, 200, "{}", found.body);
        assert_eq!(found.body["object"], "search_result");
        assert_eq!(found.body["has_more"], false);
        let data = found.body["data"].as_array().unwrap();
        assert_eq!(data.len(), 1, "{query}");
        assert_eq!(data[0]["id"], one.body["id"]);
    }
    let none = get(
        &f,
        "/v1/payment_intents/search?query=metadata%5B%27posedge_payment_id%27%5D%3A%27pay-x%27",
    )
    .await;
    assert_eq!(none.body["data"].as_array().unwrap().len(), 0);
    let id = one.body["id"].as_str().unwrap();
    let fetched = get(&f, &format!("/v1/payment_intents/{id}")).await;
    assert_eq!(fetched.body, one.body);
    assert_eq!(get(&f, "/v1/payment_intents/pi_missing").await.status, 404);
}

#[tokio::test]
async fn fake_stripe_creates_the_intent_of_a_stalled_request() {
    let f = FakeStripe::start().await;
    f.script([StripeFault::Stall(Duration::from_millis(600))]);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let form = visa("pay-st");
    let timed_out = send(
        &impatient,
        &f,
        "/v1/payment_intents",
        Some("k-st"),
        &borrow(&form),
    )
    .await;
    assert!(timed_out.is_err_and(|e| e.is_timeout()));
    let busy = create(&f, Some("k-st"), "pay-st").await;
    assert_eq!(busy.status, 409, "still executing: {}", busy.body);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        f.intents_for_key("k-st"),
        1,
        "the stalled request went through"
    );
    let retry = create(&f, Some("k-st"), "pay-st").await;
    assert_eq!((retry.status, retry.replayed), (200, true));
    assert_eq!(retry.body["id"].as_str().unwrap(), f.intents()[0].id);
    assert_eq!(f.requests()[0].answered, Some(200));
}

#[tokio::test]
async fn fake_stripe_executes_then_drops_the_connection() {
    let f = FakeStripe::start().await;
    f.script([StripeFault::ExecuteThenDrop]);
    assert!(post(
        &f,
        "/v1/payment_intents",
        Some("k-d"),
        &borrow(&visa("pay-d"))
    )
    .await
    .is_err());
    assert_eq!(f.intents_for_key("k-d"), 1);
    assert_eq!(f.requests()[0].answered, None);
    let retry = create(&f, Some("k-d"), "pay-d").await;
    assert_eq!((retry.status, retry.replayed), (200, true));
    assert_eq!(f.intents().len(), 1);
}

#[tokio::test]
async fn fake_stripe_requires_a_secret_key() {
    let f = FakeStripe::start().await;
    let client = reqwest::Client::new();
    let bare = client
        .post(format!("{}/v1/payment_intents", f.base_url()))
        .form(&visa("pay-a"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 401);
    let body: Value = bare.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let publishable = client
        .get(format!("{}/v1/", f.base_url()))
        .bearer_auth("pk_test_x")
        .send()
        .await
        .unwrap();
    assert_eq!(publishable.status().as_u16(), 401);
    let probe = get(&f, "/v1/").await;
    assert_eq!(probe.status, 404);
    assert_eq!(probe.body["error"]["type"], "invalid_request_error");
    assert!(f.intents().is_empty());
}

#[tokio::test]
async fn fake_stripe_captures_cancels_and_refunds() {
    let f = FakeStripe::start().await;
    let mut form = visa("pay-m");
    form.push(("capture_method", "manual".into()));
    let held = post(&f, "/v1/payment_intents", Some("k-m"), &borrow(&form))
        .await
        .unwrap();
    assert_eq!(held.body["status"], "requires_capture");
    assert_eq!(held.body["amount_capturable"], 430);
    let id = held.body["id"].as_str().unwrap().to_string();

    let captured = post(
        &f,
        &format!("/v1/payment_intents/{id}/capture"),
        Some("k-cap"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(captured.body["status"], "succeeded");
    assert_eq!(captured.body["amount_received"], 430);
    let twice = post(&f, &format!("/v1/payment_intents/{id}/capture"), None, &[])
        .await
        .unwrap();
    assert_eq!(twice.status, 400);
    assert_eq!(
        twice.body["error"]["code"],
        "payment_intent_unexpected_state"
    );
    let cancel = post(&f, &format!("/v1/payment_intents/{id}/cancel"), None, &[])
        .await
        .unwrap();
    assert_eq!(cancel.status, 400, "a succeeded PI cannot be canceled");

    let refund = post(&f, "/v1/refunds", Some("k-r"), &[("payment_intent", &id)])
        .await
        .unwrap();
    assert_eq!(refund.status, 200, "{}", refund.body);
    assert!(refund.body["id"].as_str().unwrap().starts_with("re_"));
    assert_eq!(refund.body["amount"], 430);
    assert!(f.intent(&id).unwrap().refunded);
    let replayed = post(&f, "/v1/refunds", Some("k-r"), &[("payment_intent", &id)])
        .await
        .unwrap();
    assert_eq!((replayed.replayed, &replayed.body), (true, &refund.body));
    let again = post(&f, "/v1/refunds", Some("k-r2"), &[("payment_intent", &id)])
        .await
        .unwrap();
    assert_eq!(again.body["error"]["code"], "charge_already_refunded");
    assert_eq!(f.refunds().len(), 1);

    let other = post(&f, "/v1/payment_intents", Some("k-m2"), &borrow(&form))
        .await
        .unwrap();
    let other_id = other.body["id"].as_str().unwrap();
    let canceled = post(
        &f,
        &format!("/v1/payment_intents/{other_id}/cancel"),
        None,
        &[("cancellation_reason", "abandoned")],
    )
    .await
    .unwrap();
    assert_eq!(canceled.body["status"], "canceled");
    assert_eq!(f.intent(other_id).unwrap().status, "canceled");
}

#[tokio::test]
async fn fake_stripe_refuses_connections_until_restored() {
    let f = FakeStripe::start_refusing().await;
    assert!(post(
        &f,
        "/v1/payment_intents",
        Some("k-x"),
        &borrow(&visa("pay-x"))
    )
    .await
    .is_err());
    assert!(f.requests().is_empty());
    f.restore().await;
    assert_eq!(create(&f, Some("k-x"), "pay-x").await.status, 200);
    f.refuse();
    assert!(post(
        &f,
        "/v1/payment_intents",
        Some("k-x"),
        &borrow(&visa("pay-x"))
    )
    .await
    .is_err());
    assert_eq!(f.intents().len(), 1);
}
