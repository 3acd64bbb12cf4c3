//! What each fuzz target asserts. One file, compiled twice: by the cargo-fuzz crate
//! (`tests/fuzz/`, nightly, libFuzzer feeds it) and by this test crate, which replays the
//! seeds and the inputs that once found a defect (`tests/fuzz/{corpus,regressions}/<target>/`)
//! on stable (`fuzz_regressions.rs`).
//!
//! Every check feeds outside bytes through the functions production calls, in the order it
//! calls them (a request body: `api::body::parse`, then validation, the fingerprint, the
//! ledger write and read-back; a config file: `Config::from_text`), then asserts what the
//! module headers promise. A panic or a failed assertion is a defect in the library.
//! The `naxml_*` targets build a sale or a day from the bytes with `arbitrary`, so a saved
//! input replays to the same case; `stripe_answer` reads a small text format.

use arbitrary::{Arbitrary, Unstructured};
use posedge::api::body;
use posedge::api::error::ApiError;
use posedge::config::{Config, ConfigDuration};
use posedge::ledger::request::{
    LineRequest, Quantity, SaleKind, SaleRequest, TaxRequest, TenderRequest,
};
use posedge::ledger::{self, validate, LedgerError, Recorded, SaleContext};
use posedge::metrics::Metrics;
use posedge::money::{Currency, Decimal, MoneyError};
use posedge::naxml::journal::{self, JournalContext, JournalSale};
use posedge::naxml::movement::{self, DayTotals, MovementContext, Report};
use posedge::pan;
use posedge::payments::flow::{self, Begin, First};
use posedge::payments::policy::{self, Policy};
use posedge::payments::{self, CardInfo, Context, PaymentRequest};
use posedge::upstream::http::{self, HttpError, Response};
use posedge::upstream::stripe::{self, Answer};
use rusqlite::{Connection, Transaction};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn usd() -> Currency {
    Currency::from_code("USD").expect("USD is ISO 4217")
}

/// One migrated in-memory ledger per process. Each check writes inside a transaction it
/// rolls back, so every input starts from the same empty ledger.
fn ledger_db() -> MutexGuard<'static, Connection> {
    static DB: OnceLock<Mutex<Connection>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut conn = Connection::open_in_memory().expect("in-memory sqlite");
        conn.pragma_update(None, "foreign_keys", true)
            .expect("foreign keys");
        posedge::store::migrate::run(&mut conn, Path::new(":memory:"), Path::new("/nonexistent"))
            .expect("migrations apply to an empty database");
        Mutex::new(conn)
    })
    .lock()
    // A failed check in one test must not fail the others that share the connection.
    .unwrap_or_else(|e| e.into_inner())
}

/// A refused body is refused as the API promises: 400 for bad JSON, 422 for a rule, a card
/// number always with its own code, and no message ever quoting one.
fn refused_properly(data: &[u8], e: &ApiError) {
    assert!(
        matches!(e.status.as_u16(), 400 | 422),
        "a body was refused with {}: {e:?}",
        e.status
    );
    if pan::contains_card_number(data) {
        assert_eq!(e.code, "card_number_refused", "{e:?}");
    }
    assert!(
        !pan::contains_card_number(e.message.as_bytes()),
        "an error message quotes a card number: {e:?}"
    );
}

/// No string, key or number of an accepted request holds a card number (invariant 6).
fn holds_no_card_number(value: &impl serde::Serialize) {
    let json = serde_json::to_value(value).expect("typed requests serialize");
    assert_eq!(pan::find_in_json(&json), None, "accepted: {json}");
}

// ---------------------------------------------------------------------------------------
// sale_body: POST /v1/sales from the bytes on.

/// `POST /v1/sales` as `api::sales::create` runs it, from the body's bytes: parse (card
/// scan, JSON, typed request), validation, fingerprint, then the ledger write and its read
/// back. A valid sale is stored exactly as sent, and sent again it is a replay.
pub fn sale_body(data: &[u8]) {
    let sale: SaleRequest = match body::parse(data, metrics()) {
        Ok(sale) => sale,
        Err(e) => return refused_properly(data, &e),
    };
    holds_no_card_number(&sale);
    if validate::validate(&sale, usd()).is_err() {
        return;
    }
    // The fingerprint hashes the canonical form; a replay is recognised by it. The canonical
    // form must therefore read back, through the same parser, as the very same request.
    let canonical = serde_json::to_vec(&sale).expect("a typed request serializes");
    let again: SaleRequest = body::parse(&canonical, metrics()).unwrap_or_else(|e| {
        panic!(
            "the canonical form {} of a valid sale is refused: {e:?}",
            String::from_utf8_lossy(&canonical)
        )
    });
    assert_eq!(again, sale, "the canonical form reads back as another sale");
    assert_eq!(
        ledger::request_fingerprint(&again),
        ledger::request_fingerprint(&sale)
    );

    let mut db = ledger_db();
    let tx = db.transaction().expect("begin");
    for t in &sale.tenders {
        if let (Some(id), "card") = (&t.payment_id, t.method.as_str()) {
            paying_card_payment(&tx, id, t.amount, &sale.currency, None, false);
        }
    }
    let ctx = sale_context(&sale, "2026-11-24", "2026-11-24T19:31:38.000Z");
    match ledger::record(&tx, &sale, &ctx) {
        Ok(Recorded::New(receipt)) => {
            let stored = ledger::get(&tx, &receipt.id)
                .expect("read back")
                .expect("a recorded sale is in the ledger");
            assert_stored_as_sent(&sale, &stored);
            match ledger::record(&tx, &sale, &ctx) {
                Ok(Recorded::Replay(r)) => assert_eq!(r, receipt),
                other => panic!("the same sale again is not a replay: {other:?}"),
            }
        }
        Ok(Recorded::Replay(r)) => panic!("a sale in an empty ledger is a replay of {r:?}"),
        // Rules that need the ledger (a refund's original sale, a card tender's payment).
        Err(LedgerError::Rule(_)) => {}
        Err(e) => panic!("a valid sale could not be written: {e}"),
    }
}

fn sale_context(sale: &SaleRequest, business_date: &str, created_at: &str) -> SaleContext {
    SaleContext {
        fingerprint: ledger::request_fingerprint(sale),
        location_id: "loc-1".into(),
        business_date: business_date.into(),
        created_at: created_at.into(),
        sync_priority: ledger::DEFAULT_SYNC_PRIORITY,
        journal_per_sale: true,
    }
}

/// Makes payment `id` exist in a paying state, so a card tender naming it can be recorded:
/// inserted and decided through the same functions `POST /v1/payments` uses.
fn paying_card_payment(
    tx: &Transaction<'_>,
    id: &str,
    amount: i64,
    currency: &str,
    brand: Option<&str>,
    offline: bool,
) {
    if !id.starts_with("pay_") || amount <= 0 {
        return; // not an id posedge mints: the tender's payment is simply not found
    }
    let req = PaymentRequest {
        client_payment_id: id.chars().take(64).collect(),
        register_id: "R-fuzz".into(),
        cashier_id: "E7".into(),
        method: "card".into(),
        amount,
        currency: currency.into(),
        payment_method: Some("pm_card_visa".into()),
        card: brand.map(|b| CardInfo {
            brand: b.into(),
            last4: "4242".into(),
        }),
    };
    // The store currency is the sale's (the journal check varies it).
    let store = Currency::from_code(currency).unwrap_or_else(usd);
    if payments::validate(&req, store).is_err() {
        return;
    }
    let fingerprint = flow::fingerprint(&req);
    let unlimited = Policy {
        enabled: true,
        allowed_methods: vec!["card".into()],
        max_transaction_amount: i64::MAX,
        max_daily_total: i64::MAX,
        max_outstanding_total: i64::MAX,
        require_manager_approval: false,
        approval_required_over: i64::MAX,
    };
    let ctx = Context {
        network: serde_json::json!({"status": "offline"}),
        actor: "E7".into(),
    };
    let begun = flow::begin(
        tx,
        &req,
        &Begin {
            id,
            fingerprint: &fingerprint,
            location_id: "loc-1",
            business_date: "2026-11-24",
            now: "2026-11-24T19:31:30.000Z",
            configured: true,
            online: !offline,
            policy: &unlimited,
            ctx: &ctx,
            at: &at_day(),
        },
    );
    match begun {
        Ok(First::Online(_)) => payments::update(
            tx,
            id,
            &payments::Update {
                status: "captured",
                mode: Some("online"),
                decline_code: None,
                message: None,
                intent: Some("pi_fuzz"),
                approved_by: None,
            },
        )
        .expect("capture"),
        Ok(First::Done(p)) => assert_eq!(p.status, "approved_offline", "{p:?}"),
        other => panic!("a new card payment under a fresh id: {other:?}"),
    }
}

fn assert_stored_as_sent(sale: &SaleRequest, stored: &ledger::Sale) {
    assert_eq!(stored.client_txn_id, sale.client_txn_id);
    assert_eq!(stored.register_id, sale.register_id);
    assert_eq!(stored.cashier_id, sale.cashier_id);
    assert_eq!(stored.currency, sale.currency);
    assert_eq!(stored.total, sale.total);
    assert_eq!(stored.kind, sale.kind.as_str());
    assert_eq!(stored.original_sale_id, sale.original_sale_id);
    assert_eq!(stored.lines.len(), sale.lines.len());
    for (s, r) in stored.lines.iter().zip(&sale.lines) {
        assert_eq!(
            (&s.sku, &s.description, s.quantity, s.unit_price, s.amount),
            (&r.sku, &r.description, r.quantity, r.unit_price, r.amount)
        );
        assert_eq!(
            (&s.merchandise_code, &s.tax_code),
            (&r.merchandise_code, &r.tax_code)
        );
    }
    let taxes: Vec<_> = stored
        .taxes
        .iter()
        .map(|t| (&t.tax_code, t.taxable_amount, t.amount))
        .collect();
    let sent: Vec<_> = sale
        .taxes
        .iter()
        .map(|t| (&t.tax_code, t.taxable_amount, t.amount))
        .collect();
    assert_eq!(taxes, sent);
    let tenders: Vec<_> = stored
        .tenders
        .iter()
        .map(|t| (&t.method, t.amount, &t.payment_id))
        .collect();
    let sent: Vec<_> = sale
        .tenders
        .iter()
        .map(|t| (&t.method, t.amount, &t.payment_id))
        .collect();
    assert_eq!(tenders, sent);
}

// ---------------------------------------------------------------------------------------
// payment_body: POST /v1/payments from the bytes on, Stripe out of reach.

/// `POST /v1/payments` as `api::payments::create` runs it with Stripe out of reach: parse,
/// validation, fingerprint, then `payments::flow::begin` (insert and offline decision in
/// one transaction) under limits taken from the input. The stored payment is the request,
/// and an approval never takes the counters over a limit (invariant 5).
pub fn payment_body(data: &[u8]) {
    let req: PaymentRequest = match body::parse(data, metrics()) {
        Ok(req) => req,
        Err(e) => return refused_properly(data, &e),
    };
    holds_no_card_number(&req);
    if payments::validate(&req, usd()).is_err() {
        return;
    }
    let canonical = serde_json::to_vec(&req).expect("a typed request serializes");
    let again: PaymentRequest = body::parse(&canonical, metrics())
        .unwrap_or_else(|e| panic!("the canonical form of a valid payment is refused: {e:?}"));
    assert_eq!(again, req);
    let fingerprint = flow::fingerprint(&req);
    assert_eq!(flow::fingerprint(&again), fingerprint);

    // Limits from the request's own digits, so they land near its amount.
    let a = req.amount;
    let policy = Policy {
        enabled: true,
        allowed_methods: vec!["cash".into(), "card".into()],
        max_transaction_amount: a + (a % 3) - 1,
        max_daily_total: a.saturating_mul(2) - (a % 5),
        max_outstanding_total: a.saturating_mul(3) - (a % 7) - a,
        require_manager_approval: a % 11 == 0,
        approval_required_over: a / 2,
    };
    let ctx = Context {
        network: serde_json::json!({"status": "offline"}),
        actor: req.cashier_id.clone(),
    };
    let mut db = ledger_db();
    let tx = db.transaction().expect("begin");
    let b = Begin {
        id: "pay_01JG0000000000000000000001",
        fingerprint: &fingerprint,
        location_id: "loc-1",
        business_date: "2026-11-24",
        now: "2026-11-24T19:31:30.000Z",
        configured: true,
        online: false,
        policy: &policy,
        ctx: &ctx,
        at: &at_day(),
    };
    let p = match flow::begin(&tx, &req, &b) {
        Ok(First::Done(p)) => p,
        other => panic!("a new payment decided offline: {other:?}"),
    };
    assert_eq!(
        (&p.client_payment_id, &p.register_id, &p.cashier_id),
        (&req.client_payment_id, &req.register_id, &req.cashier_id)
    );
    assert_eq!(
        (&p.method, p.amount, &p.currency),
        (&req.method, req.amount, &req.currency)
    );
    assert_eq!(p.card, req.card);
    assert_eq!(p.payment_method, req.payment_method);
    let expected = match req.method.as_str() {
        "cash" => "recorded",
        _ => match policy::decide(&req.method, req.amount, &policy, Default::default()) {
            policy::Decision::Approve => "approved_offline",
            policy::Decision::NeedsApproval => "pending_approval",
            policy::Decision::Refuse(_) => "refused_offline",
        },
    };
    assert_eq!(p.status, expected, "{p:?}");
    let counters = payments::counters(&tx, "loc-1", "2026-11-24").expect("counters");
    assert!(
        counters.today_total <= policy.max_daily_total
            && counters.outstanding_total <= policy.max_outstanding_total,
        "approved over a limit: {counters:?} {policy:?}"
    );
    match flow::begin(&tx, &req, &b) {
        Ok(First::Existing(r)) => assert_eq!(r.id, p.id),
        other => panic!("the same payment again is not a replay: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// money_decimal: config amounts.

/// A decimal amount and a currency → minor units, as config validation converts them,
/// against a digit-string reference: exact, never rounded, a too-precise or too-large
/// amount an error. Formatting minor units and parsing them back is the identity.
pub fn money_decimal(data: &[u8]) {
    const CODES: [&str; 5] = ["USD", "JPY", "BHD", "CLF", "EUR"];
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let currency = Currency::from_code(CODES[usize::from(pick) % CODES.len()]).expect("ISO 4217");
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let got = Decimal::parse(text).and_then(|d| {
        assert_eq!(
            Decimal::parse(&d.to_string()),
            Ok(d),
            "{text:?} displays as {d}, which parses to another amount"
        );
        d.to_minor(currency)
    });
    match (reference_minor(text, currency.exponent()), &got) {
        (Ok(want), Ok(minor)) => assert_eq!(*minor, want, "{text:?} in {currency}"),
        (Err(Ref::Syntax), Err(MoneyError::Syntax(_)))
        | (Err(Ref::TooPrecise), Err(MoneyError::TooPrecise { .. }))
        | (Err(Ref::TooLarge), Err(MoneyError::TooLarge(_))) => {}
        // Too precise AND more significant digits than u64 holds: either is a fair reason.
        (Err(Ref::TooPrecise), Err(MoneyError::TooLarge(_))) if significant_digits(text) > 19 => {}
        (want, got) => panic!("{text:?} in {currency}: expected {want:?}, got {got:?}"),
    }
    if let Ok(minor) = got {
        let formatted = currency.format(minor);
        let back = Decimal::parse(&formatted).and_then(|d| d.to_minor(currency));
        assert_eq!(back, Ok(minor), "{minor} formats as {formatted:?}");
    }
}

fn significant_digits(text: &str) -> usize {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    format!("{int}{}", frac.trim_end_matches('0'))
        .trim_start_matches('0')
        .len()
}

#[derive(Debug, PartialEq, Eq)]
enum Ref {
    Syntax,
    TooPrecise,
    TooLarge,
}

/// `digits[.digits]` → minor units with `places` decimals, by string manipulation only.
fn reference_minor(text: &str, places: u32) -> Result<i64, Ref> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (text.contains('.') && frac.is_empty()) {
        return Err(Ref::Syntax);
    }
    let places = places as usize;
    let (kept, dropped) = if frac.len() > places {
        frac.split_at(places)
    } else {
        (frac, "")
    };
    if dropped.bytes().any(|b| b != b'0') {
        return Err(Ref::TooPrecise);
    }
    let minor = format!("{}{kept:0<places$}", int.trim_start_matches('0'));
    let minor = minor.trim_start_matches('0');
    if minor.is_empty() {
        return Ok(0);
    }
    minor.parse::<i64>().map_err(|_| Ref::TooLarge)
}

// ---------------------------------------------------------------------------------------
// config_toml and config_duration.

/// A config file's text, as `posedge check-config` and start-up read it
/// (`Config::from_text`): every error names the file and a key on one line; a valid config
/// keeps the bounds its consumers rely on, and what start-up builds from it can be built.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/posedge/fuzz.toml");
    let config = match Config::from_text(text, path) {
        Ok(config) => config,
        Err(e) => {
            assert_eq!(e.file, "/etc/posedge/fuzz.toml", "{e}");
            assert!(!e.key.is_empty(), "an error names no key: {e}");
            assert!(!e.to_string().contains('\n'), "a multi-line error: {e}");
            return;
        }
    };
    let r = &config.resolved;
    let limits = [
        r.offline.max_transaction_amount,
        r.offline.max_daily_total,
        r.offline.max_outstanding_total,
        r.offline.approval_required_over,
    ];
    assert!(limits.iter().all(|l| *l >= 0), "{limits:?}");
    let _ = flow::policy_from(&config);
    if let Some(s3) = &config.backup.s3 {
        let _ = posedge::backup::upload::bucket(s3);
    }
    // Every duration and day count is something a clock can be moved by: start-up adds them
    // to now in milliseconds (i64) and in chrono (offline window, retention).
    let durations = [
        config.server.request_timeout,
        config.server.shutdown_grace,
        config.offline_payments.offline_window,
        config.probe.interval,
        config.probe.timeout,
        config.probe.offline_interval,
        config.outbox.process_interval,
        config.outbox.backoff_base,
        config.outbox.backoff_max,
        config.alerts.offline_for,
        config.alerts.oldest_pending,
        config.backup.interval,
        config.conexxus_settings().timeout,
        config.conexxus_settings().batch_max_wait,
    ];
    for d in durations {
        assert!(d <= ConfigDuration::MAX, "{d:?} is over the bound");
        assert_clock_can_move_by(d.0);
    }
    assert!(config.outbox.retention_days <= posedge::config::MAX_RETENTION_DAYS);
    assert_clock_can_move_by(Duration::from_secs(
        u64::from(config.outbox.retention_days) * 86_400,
    ));
}

fn assert_clock_can_move_by(d: Duration) {
    let ms = i64::try_from(d.as_millis()).expect("fits i64 milliseconds");
    assert!(
        ms.checked_add(4_102_444_800_000).is_some(),
        "{d:?} from 2100 overflows"
    );
    let delta = chrono::Duration::from_std(d).expect("fits a chrono duration");
    let now = chrono::Utc::now();
    assert!(now.checked_sub_signed(delta).is_some() && now.checked_add_signed(delta).is_some());
}

/// A duration string, against a reference grammar (`(digits unit)+`, units ms s m h d) and
/// exact arithmetic: accepted exactly when it is well-formed and within the bound.
pub fn config_duration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let got = ConfigDuration::parse(text);
    match (reference_duration_ms(text), &got) {
        (Some(ms), Ok(d)) => assert_eq!(d.0.as_millis(), ms, "{text:?}"),
        (None, Err(message)) => assert!(message.contains("duration"), "{message}"),
        (want, got) => panic!("{text:?}: expected {want:?} ms, got {got:?}"),
    }
    if let Ok(d) = got {
        assert!(d <= ConfigDuration::MAX);
        assert_clock_can_move_by(d.0);
    }
}

fn reference_duration_ms(text: &str) -> Option<u128> {
    let mut rest = text.as_bytes();
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let m = rest[n..]
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let digits = std::str::from_utf8(&rest[..n]).ok()?;
        let significant = digits.trim_start_matches('0');
        if n == 0 || significant.len() > 30 {
            return None;
        }
        let value: u128 = significant.parse().unwrap_or(0);
        let unit: u128 = match &rest[n..n + m] {
            b"ms" => 1,
            b"s" => 1_000,
            b"m" => 60_000,
            b"h" => 3_600_000,
            b"d" => 86_400_000,
            _ => return None,
        };
        total += value * unit;
        if total > ConfigDuration::MAX.0.as_millis() {
            return None;
        }
        rest = &rest[n + m..];
    }
    Some(total)
}

// ---------------------------------------------------------------------------------------
// retry_after and stripe_answer: what upstreams answer.

/// A `Retry-After` header value → the floor of the next delay. RFC 9110 §10.2.3:
/// delay-seconds is `1*DIGIT`; HTTP dates are ignored by design (wall clock); anything
/// else means no floor; a huge delay is honoured as the 24 h cap, not dropped.
pub fn retry_after(data: &[u8]) {
    let Ok(value) = hyper::header::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = hyper::HeaderMap::new();
    headers.insert(hyper::header::RETRY_AFTER, value);
    let got = http::retry_after(&headers);
    let trimmed = std::str::from_utf8(data)
        .ok()
        .filter(|s| s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)))
        .map(|s| s.trim_matches([' ', '\t']));
    let want = match trimmed {
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            let secs = s.trim_start_matches('0');
            let capped = if secs.len() > 6 {
                86_400
            } else {
                secs.parse::<u64>().unwrap_or(0).min(86_400)
            };
            Some(Duration::from_secs(capped))
        }
        _ => None,
    };
    assert_eq!(
        got,
        want,
        "Retry-After: {:?}",
        String::from_utf8_lossy(data)
    );
}

/// A Stripe HTTP answer (status, `Stripe-Should-Retry`, `Retry-After`, body) → what the
/// payment flow does, as DESIGN.md classifies it: 402 is a decline; `Stripe-Should-Retry`
/// decides when present; 409, 429 and 5xx retry; other 4xx are permanent. A success is
/// only a success when it names the PaymentIntent and a status that says so; a 2xx that is
/// not a PaymentIntent is no definitive answer and is retried under the same key.
pub fn stripe_answer(data: &[u8]) {
    // Text, so seeds are readable: `STATUS\nSTRIPE-SHOULD-RETRY\nRETRY-AFTER\nBODY`, a
    // header left out when its line is `-`.
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let (Some(status), Some(should_retry), Some(retry_after)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let body = parts.next().unwrap_or_default().to_vec();
    let Some(status) = std::str::from_utf8(status)
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| hyper::StatusCode::from_u16(s).ok())
    else {
        return;
    };
    let mut headers = hyper::HeaderMap::new();
    for (name, value) in [
        ("stripe-should-retry", should_retry),
        ("retry-after", retry_after),
    ] {
        if value == b"-" {
            continue;
        }
        if let Ok(v) = hyper::header::HeaderValue::from_bytes(value) {
            headers.insert(name, v);
        }
    }
    let should_retry = headers
        .get("stripe-should-retry")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.eq_ignore_ascii_case("true"));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let answer = stripe::classify(Ok(Response {
        status,
        headers,
        body: bytes::Bytes::from(body),
        latency: Duration::ZERO,
    }));
    if let Answer::Retry {
        retry_after: Some(d),
        ..
    } = &answer
    {
        assert!(*d <= Duration::from_secs(86_400), "{answer:?}");
    }
    let code = status.as_u16();
    match (&answer, code) {
        (Answer::Declined { code, message, .. }, 402) => {
            assert!(!code.is_empty() && !message.is_empty(), "{answer:?}");
        }
        (_, 402) => panic!("a 402 is not a decline: {answer:?}"),
        (_, 200..=299) => {
            let intent = json["id"].as_str().unwrap_or_default();
            let pi_status = json["status"].as_str().unwrap_or_default();
            match &answer {
                Answer::Succeeded { intent: i }
                | Answer::Authorized { intent: i }
                | Answer::Processing { intent: i } => {
                    assert!(
                        !i.is_empty(),
                        "a success without its PaymentIntent: {answer:?}"
                    );
                    assert_eq!(i, intent);
                }
                Answer::Declined {
                    intent: i, code, ..
                } => {
                    assert!(
                        stripe::NOT_CHARGED_STATUSES.contains(&pi_status),
                        "a 2xx without a declined PaymentIntent is a decline: {answer:?} from {json}"
                    );
                    assert_eq!(i.as_deref(), Some(intent));
                    assert!(!intent.is_empty() && !code.is_empty(), "{answer:?}");
                }
                Answer::Retry { reachable, .. } => {
                    assert!(*reachable);
                    assert!(
                        intent.is_empty()
                            || !["succeeded", "requires_capture", "processing"]
                                .iter()
                                .chain(stripe::NOT_CHARGED_STATUSES)
                                .any(|s| *s == pi_status),
                        "a PaymentIntent with a known status is retried: {answer:?} from {json}"
                    );
                }
                Answer::Permanent { .. } => panic!("a 2xx is permanent: {answer:?}"),
            }
        }
        (Answer::Permanent { .. }, _) if should_retry == Some(false) => {}
        (_, _) if should_retry == Some(false) => panic!("should-retry false: {answer:?}"),
        (
            Answer::Retry {
                reachable: true, ..
            },
            _,
        ) if should_retry == Some(true) => {}
        (
            Answer::Retry {
                reachable: true,
                retry_after,
                ..
            },
            409,
        ) => {
            assert!(
                retry_after.is_some_and(|d| d >= stripe::IN_PROGRESS_WAIT),
                "{answer:?}"
            );
        }
        (
            Answer::Retry {
                reachable: true, ..
            },
            429 | 500..=599,
        ) => {}
        (Answer::Permanent { .. }, 400..=499) if should_retry.is_none() => {}
        // Outside what DESIGN.md names (1xx, 3xx, 6xx and up, from a proxy rather than
        // Stripe): either is defensible, as long as it is no success and no decline.
        (Answer::Permanent { .. } | Answer::Retry { .. }, 100..=199 | 300..=399 | 600..) => {}
        (a, c) => panic!("HTTP {c} (should-retry {should_retry:?}) classified as {a:?}"),
    }
    // Errors that never got an answer: retried, reachable unless nothing was sent.
    for (e, reachable) in [
        (HttpError::Connect("refused".into()), false),
        (HttpError::Timeout(Duration::from_secs(10)), true),
    ] {
        assert!(
            matches!(stripe::classify(Err(e)), Answer::Retry { reachable: r, .. } if r == reachable)
        );
    }
}

// ---------------------------------------------------------------------------------------
// naxml_journal and naxml_movement: our documents, read back by an independent parser.

/// Text as registers may send it: printable mostly, with XML-special characters and
/// markup-looking runs, non-ASCII letters, emoji, bidi and zero-width characters, the edges
/// of the XML character range, and now and then any character at all.
#[derive(Debug, Clone)]
struct Text(String);

impl Text {
    /// A number drawn from the text, for ids that must not be text.
    fn seed(&self) -> u64 {
        self.0
            .chars()
            .fold(0u64, |h, c| h.wrapping_mul(31).wrapping_add(u64::from(c)))
    }
}

impl<'a> Arbitrary<'a> for Text {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "0",
            "7",
            " ",
            "-",
            "_",
            ".",
            "/",
            "&",
            "<",
            ">",
            "\"",
            "'",
            "]]>",
            "<!--",
            "&amp;",
            "&#x41;",
            "<?xml",
            "é",
            "ß",
            "日本",
            "Ω",
            "😀",
            "\u{200B}",
            "\u{200D}",
            "\u{202E}",
            "\u{00A0}",
            "\u{2028}",
            "\u{FEFF}",
            "\u{FFFD}",
            "\u{FFFE}",
            "\u{FFFF}",
            "\u{D7FF}",
            "\u{E000}",
            "\u{10FFFF}",
            "\u{0301}",
            "\u{1F3F3}",
        ];
        let n = u.int_in_range(1..=20)?;
        let mut s = String::new();
        for _ in 0..n {
            if u.ratio(1, 10)? {
                s.push(char::arbitrary(u)?);
            } else {
                s.push_str(u.choose(PIECES)?);
            }
        }
        Ok(Text(s))
    }
}

#[derive(Debug, Arbitrary)]
struct FuzzLine {
    sku: Text,
    description: Text,
    /// Thousandths.
    quantity: u32,
    unit_price: u32,
    amount: u32,
    merchandise_code: Option<Text>,
    tax_code: Option<Text>,
}

#[derive(Debug, Arbitrary)]
struct FuzzTax {
    tax_code: Text,
    taxable_amount: u32,
    amount: u16,
}

#[derive(Debug, Arbitrary)]
struct FuzzTender {
    card: bool,
    amount: i32,
    /// Only a seed for the id: payment ids are posedge's own (`pay_` and a ULID), not
    /// register text. (A `Text` still, so saved inputs keep decoding to the same sales.)
    payment: Text,
    offline: bool,
    brand: Option<u8>,
}

#[derive(Debug, Arbitrary)]
struct FuzzSale {
    refund: bool,
    currency: u8,
    timezone: u8,
    client_txn_id: Text,
    register_id: Text,
    cashier_id: Text,
    /// Seconds after 2000-01-01T00:00:00Z.
    created: u32,
    lines: Vec<FuzzLine>,
    taxes: Vec<FuzzTax>,
    tenders: Vec<FuzzTender>,
    sequence: i64,
}

const CURRENCIES: [&str; 4] = ["USD", "JPY", "BHD", "EUR"];
const BRANDS: [&str; 4] = ["visa", "mastercard", "amex", "discover_2"];
const ZONES: [chrono_tz::Tz; 5] = [
    chrono_tz::UTC,
    chrono_tz::America::Chicago,
    chrono_tz::Asia::Kathmandu,
    chrono_tz::Pacific::Chatham,
    chrono_tz::America::St_Johns,
];

impl FuzzSale {
    /// A sale that passes validation, balanced: lines plus taxes make the total, tenders
    /// pay it (the last tender takes up the difference; negative cash is change).
    fn request(&self) -> SaleRequest {
        let currency = CURRENCIES[usize::from(self.currency) % CURRENCIES.len()];
        let lines: Vec<LineRequest> = self
            .lines
            .iter()
            .map(|l| LineRequest {
                sku: l.sku.0.clone(),
                description: l.description.0.clone(),
                quantity: Quantity(i64::from(l.quantity).max(1)),
                unit_price: i64::from(l.unit_price),
                amount: i64::from(l.amount),
                merchandise_code: l.merchandise_code.as_ref().map(|t| t.0.clone()),
                tax_code: l.tax_code.as_ref().map(|t| t.0.clone()),
            })
            .collect();
        let taxes: Vec<TaxRequest> = self
            .taxes
            .iter()
            .map(|t| TaxRequest {
                tax_code: t.tax_code.0.clone(),
                taxable_amount: i64::from(t.taxable_amount),
                amount: i64::from(t.amount),
            })
            .collect();
        let total: i64 = lines.iter().map(|l| l.amount).sum::<i64>()
            + taxes.iter().map(|t| t.amount).sum::<i64>();
        let mut tenders: Vec<TenderRequest> = self
            .tenders
            .iter()
            .enumerate()
            .map(|(i, t)| TenderRequest {
                method: if t.card && !self.refund {
                    "card"
                } else {
                    "cash"
                }
                .into(),
                amount: if t.card && !self.refund {
                    i64::from(t.amount).abs().max(1)
                } else {
                    i64::from(t.amount)
                },
                payment_id: (t.card && !self.refund)
                    .then(|| format!("pay_01JG{i:02}{:020}", t.payment.seed())),
            })
            .collect();
        let paid: i64 = tenders.iter().map(|t| t.amount).sum();
        if paid != total {
            tenders.push(TenderRequest {
                method: "cash".into(),
                amount: total - paid,
                payment_id: None,
            });
        }
        SaleRequest {
            kind: if self.refund {
                SaleKind::Refund
            } else {
                SaleKind::Sale
            },
            original_sale_id: None,
            client_txn_id: self.client_txn_id.0.clone(),
            register_id: self.register_id.0.clone(),
            cashier_id: self.cashier_id.0.clone(),
            currency: currency.into(),
            lines,
            taxes,
            tenders,
            total,
        }
    }
}

/// An arbitrary valid sale or refund, with card tenders approved online or offline, is
/// recorded, loaded as a journal event (`conexxus::events::load`) and rendered
/// (`naxml::journal::render`); the document is well-formed XML and an independent parser
/// (roxmltree) reads back every id, text, amount, quantity and tender the ledger holds.
pub fn naxml_journal(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(fuzz) = FuzzSale::arbitrary(&mut u) else {
        return;
    };
    let sale = fuzz.request();
    let currency = Currency::from_code(&sale.currency).expect("ISO 4217");
    if validate::validate(&sale, currency).is_err() {
        return;
    }
    let tz = ZONES[usize::from(fuzz.timezone) % ZONES.len()];
    let created = chrono::DateTime::from_timestamp(946_684_800 + i64::from(fuzz.created), 0)
        .expect("in range");
    let created_at = posedge::business_day::rfc3339(created);
    let business_date = created.with_timezone(&tz).date_naive().to_string();

    let mut db = ledger_db();
    let tx = db.transaction().expect("begin");
    for (t, f) in sale.tenders.iter().zip(&fuzz.tenders) {
        if let (Some(id), "card") = (&t.payment_id, t.method.as_str()) {
            let brand = f.brand.map(|b| BRANDS[usize::from(b) % BRANDS.len()]);
            paying_card_payment(&tx, id, t.amount, &sale.currency, brand, f.offline);
        }
    }
    let ctx = sale_context(&sale, &business_date, &created_at);
    let id = match ledger::record(&tx, &sale, &ctx) {
        Ok(Recorded::New(receipt)) => receipt.id,
        Err(LedgerError::Rule(r)) if r.code == "payment_not_found" => return,
        other => panic!("a valid sale could not be written: {other:?}"),
    };
    let event = posedge::conexxus::events::load(&tx, &id)
        .expect("load")
        .expect("the sale just recorded");
    let jctx = JournalContext {
        store_location_id: "loc-1001",
        timezone: tz,
        sequence: fuzz.sequence,
    };
    let doc = journal::render(
        &jctx,
        &[JournalSale {
            sale: &event.sale,
            event_sequence: event.sequence,
            authorizations: event.authorizations.clone(),
        }],
    );
    let text = String::from_utf8(doc).expect("the document is UTF-8");
    let xml = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("the journal is not well-formed XML: {e}\n{text}"));
    check_journal(&xml, &event, currency, tz, &text);
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> roxmltree::Node<'a, 'i> {
    node.children()
        .find(|c| c.has_tag_name(name))
        .unwrap_or_else(|| panic!("<{}> has no <{name}>", node.tag_name().name()))
}

/// The text of `node`'s child `name`: an element with text content must exist for
/// every value we write, empty text included.
fn text_of<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> &'a str {
    child(node, name).text().unwrap_or("")
}

fn flag_of(node: roxmltree::Node<'_, '_>, name: &str) -> bool {
    match child(node, name).attribute("value") {
        Some("yes") => true,
        Some("no") => false,
        other => panic!("<{name}> has value {other:?}"),
    }
}

/// A NAXML amount: the currency's places exactly, no sign unless negative.
fn amount_of(node: roxmltree::Node<'_, '_>, name: &str, currency: Currency) -> i64 {
    let text = text_of(node, name);
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text),
    };
    let places = currency.exponent() as usize;
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(
        !int.is_empty()
            && frac.len() == places
            && (places == 0) != digits.contains('.')
            && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()),
        "<{name}>{text}</{name}> is not an amount with {places} places of {currency}"
    );
    sign * format!("{int}{frac}").parse::<i64>().expect("an amount")
}

fn check_journal(
    xml: &roxmltree::Document<'_>,
    event: &posedge::conexxus::events::Event,
    currency: Currency,
    tz: chrono_tz::Tz,
    text: &str,
) {
    let sale = &event.sale;
    let root = xml.root_element();
    assert_eq!(root.tag_name().name(), "NAXML-POSJournal");
    assert_eq!(root.tag_name().namespace(), Some(posedge::naxml::NAMESPACE));
    assert_eq!(
        text_of(child(root, "TransmissionHeader"), "StoreLocationID"),
        "loc-1001"
    );
    let report = child(root, "JournalReport");
    let name = if sale.kind == "refund" {
        "RefundEvent"
    } else {
        "SaleEvent"
    };
    let events: Vec<_> = report.children().filter(|c| c.is_element()).collect();
    assert_eq!(events.len(), 2, "a header and one event:\n{text}");
    let ev = events[1];
    assert_eq!(ev.tag_name().name(), name);
    assert_eq!(text_of(ev, "EventSequenceID"), event.sequence.to_string());
    assert_eq!(text_of(ev, "CashierID"), sale.cashier_id);
    assert_eq!(text_of(ev, "RegisterID"), sale.register_id);
    assert_eq!(text_of(ev, "TransactionID"), sale.client_txn_id);
    assert_eq!(text_of(ev, "BusinessDate"), sale.business_date);
    let local = chrono::DateTime::parse_from_rfc3339(&sale.created_at)
        .expect("rfc3339")
        .with_timezone(&tz);
    assert_eq!(
        text_of(ev, "EventStartDate"),
        local.format("%Y-%m-%d").to_string()
    );
    assert_eq!(
        text_of(ev, "EventStartTime"),
        local.format("%H:%M:%S").to_string()
    );
    let offline = event.authorizations.iter().flatten().any(|a| a.offline);
    assert_eq!(flag_of(ev, "OfflineFlag"), offline);

    let lines: Vec<_> = child(ev, "TransactionDetailGroup")
        .children()
        .filter(|c| c.has_tag_name("TransactionLine"))
        .collect();
    assert_eq!(
        lines.len(),
        sale.lines.len() + sale.taxes.len() + sale.tenders.len(),
        "{text}"
    );
    for (node, line) in lines.iter().zip(&sale.lines) {
        let item = child(*node, "ItemLine");
        assert_eq!(text_of(child(item, "ItemCode"), "POSCode"), line.sku);
        assert_eq!(text_of(item, "Description"), line.description);
        assert_eq!(
            amount_of(item, "ActualSalesPrice", currency),
            line.unit_price
        );
        assert_eq!(amount_of(item, "SalesAmount", currency), line.amount);
        assert_eq!(
            Quantity::parse(text_of(item, "SalesQuantity")),
            Some(line.quantity)
        );
        let merch = item.children().find(|c| c.has_tag_name("MerchandiseCode"));
        assert_eq!(
            merch.map(|m| m.text().unwrap_or("")),
            line.merchandise_code.as_deref()
        );
        let tax = item
            .children()
            .find(|c| c.has_tag_name("ItemTax"))
            .map(|t| text_of(t, "TaxLevelID"));
        assert_eq!(tax, line.tax_code.as_deref());
    }
    for (node, tax) in lines[sale.lines.len()..].iter().zip(&sale.taxes) {
        let t = child(*node, "TransactionTax");
        assert_eq!(text_of(t, "TaxLevelID"), tax.tax_code);
        assert_eq!(
            amount_of(t, "TaxableSalesAmount", currency),
            tax.taxable_amount
        );
        assert_eq!(amount_of(t, "TaxCollectedAmount", currency), tax.amount);
    }
    let tenders = &lines[sale.lines.len() + sale.taxes.len()..];
    for ((node, tender), auth) in tenders.iter().zip(&sale.tenders).zip(&event.authorizations) {
        let info = child(*node, "TenderInfo");
        let code = text_of(child(info, "Tender"), "TenderCode");
        assert_eq!(
            code,
            if tender.method == "card" {
                "creditCards"
            } else {
                "cash"
            }
        );
        let change = flag_of(info, "ChangeFlag");
        let amount = amount_of(info, "TenderAmount", currency);
        assert_eq!(if change { -amount } else { amount }, tender.amount);
        let sub = text_of(child(info, "Tender"), "TenderSubCode");
        let a = info.children().find(|c| c.has_tag_name("Authorization"));
        match (auth, a) {
            (Some(auth), Some(a)) => {
                assert_eq!(sub, auth.brand.as_deref().unwrap_or("generic"));
                assert_eq!(text_of(a, "ApprovalReferenceCode"), auth.payment_id);
                assert_eq!(
                    text_of(a, "AuthorizationResponseCode"),
                    if auth.offline { "offline" } else { "00" }
                );
                assert_eq!(flag_of(a, "HostAuthorizedFlag"), !auth.offline);
                assert_eq!(
                    amount_of(a, "AuthorizedChargeAmount", currency),
                    auth.amount
                );
            }
            (None, None) => assert_eq!(sub, "generic"),
            (auth, a) => panic!("authorization {auth:?} written as {a:?}"),
        }
    }
    let summary = child(ev, "TransactionSummary");
    let gross: i64 = sale.lines.iter().map(|l| l.amount).sum();
    let tax: i64 = sale.taxes.iter().map(|t| t.amount).sum();
    assert_eq!(
        amount_of(summary, "TransactionTotalGrossAmount", currency),
        gross
    );
    assert_eq!(
        amount_of(summary, "TransactionTotalTaxSalesAmount", currency),
        tax
    );
    assert_eq!(
        amount_of(summary, "TransactionTotalGrandAmount", currency),
        sale.total
    );
    assert_eq!(
        child(summary, "TransactionTotalGrandAmount").attribute("direction"),
        Some(if sale.kind == "refund" {
            "Refunded"
        } else {
            "Collected"
        })
    );
}

#[derive(Debug, Arbitrary)]
struct FuzzMerch {
    code: Text,
    sales_quantity: u32,
    sales_amount: u32,
    refund_amount: u32,
    refund_count: u16,
    transactions: u16,
}

#[derive(Debug, Arbitrary)]
struct FuzzTaxTotals {
    code: Text,
    taxable_amount: u32,
    collected: u32,
    taxable_refunded: u32,
    refunded: u32,
}

#[derive(Debug, Arbitrary)]
struct FuzzItem {
    sku: Text,
    description: Text,
    merchandise_code: Option<Text>,
    unit_price: u32,
    sales_quantity: u32,
    sales_amount: u32,
    refund_quantity: u32,
    refund_amount: u32,
}

#[derive(Debug, Arbitrary)]
struct FuzzTenderTotals {
    card: bool,
    sales_amount: i32,
    sales_count: u16,
    refund_amount: u32,
    refund_count: u16,
}

#[derive(Debug, Arbitrary)]
struct FuzzDay {
    currency: u8,
    merchandise: Vec<FuzzMerch>,
    taxes: Vec<FuzzTaxTotals>,
    items: Vec<FuzzItem>,
    tenders: Vec<FuzzTenderTotals>,
    tallies: [(u16, u32); 5],
    sequence: i64,
}

/// Arbitrary day totals (what `conexxus::totals::day` sums) render as the four movement
/// reports; each is well-formed and reads back, value for value, in the store currency.
pub fn naxml_movement(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(f) = FuzzDay::arbitrary(&mut u) else {
        return;
    };
    let currency = Currency::from_code(CURRENCIES[usize::from(f.currency) % CURRENCIES.len()])
        .expect("ISO 4217");
    let tally = |(count, amount): (u16, u32)| movement::Tally {
        count: i64::from(count),
        amount: i64::from(amount),
    };
    let t = DayTotals {
        business_date: "2026-11-24".into(),
        merchandise: f
            .merchandise
            .iter()
            .map(|m| movement::MerchandiseTotals {
                code: m.code.0.clone(),
                sales_quantity: i64::from(m.sales_quantity),
                sales_amount: i64::from(m.sales_amount),
                refund_amount: i64::from(m.refund_amount),
                refund_count: i64::from(m.refund_count),
                transactions: i64::from(m.transactions),
            })
            .collect(),
        taxes: f
            .taxes
            .iter()
            .map(|x| movement::TaxTotals {
                code: x.code.0.clone(),
                taxable_amount: i64::from(x.taxable_amount),
                collected: i64::from(x.collected),
                taxable_refunded: i64::from(x.taxable_refunded),
                refunded: i64::from(x.refunded),
            })
            .collect(),
        items: f
            .items
            .iter()
            .map(|i| movement::ItemTotals {
                sku: i.sku.0.clone(),
                description: i.description.0.clone(),
                merchandise_code: i.merchandise_code.as_ref().map(|m| m.0.clone()),
                unit_price: i64::from(i.unit_price),
                sales_quantity: i64::from(i.sales_quantity),
                sales_amount: i64::from(i.sales_amount),
                refund_quantity: i64::from(i.refund_quantity),
                refund_amount: i64::from(i.refund_amount),
            })
            .collect(),
        tenders: f
            .tenders
            .iter()
            .map(|x| movement::TenderTotals {
                method: if x.card { "card" } else { "cash" }.into(),
                sales_amount: i64::from(x.sales_amount),
                sales_count: i64::from(x.sales_count),
                refund_amount: i64::from(x.refund_amount),
                refund_count: i64::from(x.refund_count),
            })
            .collect(),
        sales: tally(f.tallies[0]),
        refunds: tally(f.tallies[1]),
        offline_sales: tally(f.tallies[2]),
        offline_approvals: tally(f.tallies[3]),
        declined_upstream: tally(f.tallies[4]),
    };
    // Texts stored in the ledger passed validation; the reports only ever hold such texts.
    let valid = |s: &str| validate::check_text("code", s, 64).is_ok();
    if !t.merchandise.iter().all(|m| valid(&m.code))
        || !t.taxes.iter().all(|x| valid(&x.code))
        || !t.items.iter().all(|i| {
            valid(&i.sku)
                && valid(&format!("d{}", i.description))
                && i.merchandise_code.as_deref().is_none_or(valid)
        })
    {
        return;
    }
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).expect("a date");
    let ctx = MovementContext {
        store_location_id: "loc-1001",
        sequence: f.sequence,
        begin: day.and_hms_opt(0, 0, 0).expect("midnight"),
        end: day.and_hms_opt(23, 59, 59).expect("a time"),
        currency,
    };
    for report in Report::ALL {
        let doc = movement::render(report, &ctx, &t);
        let text = String::from_utf8(doc).expect("UTF-8");
        let xml = roxmltree::Document::parse(&text)
            .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}\n{text}", report.code()));
        let root = xml.root_element();
        assert_eq!(root.tag_name().name(), "NAXML-MovementReport");
        let body = root
            .children()
            .filter(|c| c.is_element())
            .nth(1)
            .expect("the report after the header");
        assert_eq!(
            text_of(child(body, "MovementHeader"), "ReportSequenceNumber"),
            f.sequence.to_string()
        );
        let details = |name: &str| -> Vec<roxmltree::Node<'_, '_>> {
            body.children().filter(|c| c.has_tag_name(name)).collect()
        };
        match report {
            Report::Mcm => {
                let d = details("MCMDetail");
                assert_eq!(d.len(), t.merchandise.len());
                for (n, m) in d.iter().zip(&t.merchandise) {
                    assert_eq!(text_of(*n, "MerchandiseCode"), m.code);
                    let s = child(*n, "MCMSalesTotals");
                    assert_eq!(amount_of(s, "SalesAmount", currency), m.sales_amount);
                    assert_eq!(amount_of(s, "RefundAmount", currency), m.refund_amount);
                    assert_eq!(text_of(s, "RefundCount"), m.refund_count.to_string());
                    assert_eq!(text_of(s, "TransactionCount"), m.transactions.to_string());
                    assert_eq!(
                        Quantity::parse(text_of(s, "SalesQuantity")),
                        Some(Quantity(m.sales_quantity))
                    );
                }
            }
            Report::Tlm => {
                let d = details("TLMDetail");
                assert_eq!(d.len(), t.taxes.len());
                for (n, x) in d.iter().zip(&t.taxes) {
                    assert_eq!(text_of(*n, "TaxLevelID"), x.code);
                    assert_eq!(
                        amount_of(*n, "TaxableSalesAmount", currency),
                        x.taxable_amount
                    );
                    assert_eq!(amount_of(*n, "TaxCollectedAmount", currency), x.collected);
                    assert_eq!(
                        amount_of(*n, "TaxableSalesRefundedAmount", currency),
                        x.taxable_refunded
                    );
                    assert_eq!(amount_of(*n, "TaxRefundedAmount", currency), x.refunded);
                }
            }
            Report::Msm => {
                let d = details("MSMDetail");
                assert_eq!(d.len(), 7 + 2 * t.tenders.len());
                let read = |n: roxmltree::Node<'_, '_>| {
                    let s = child(n, "MSMSalesTotals");
                    (
                        text_of(s, "MiscellaneousSummaryCount")
                            .parse::<i64>()
                            .expect("a count"),
                        amount_of(s, "MiscellaneousSummaryAmount", currency),
                    )
                };
                assert_eq!(read(d[0]), (t.sales.count, t.sales.amount));
                assert_eq!(read(d[1]), (t.refunds.count, t.refunds.amount));
                assert_eq!(read(d[2]), (t.sales.count + t.refunds.count, t.net()));
                for (i, x) in t.tenders.iter().enumerate() {
                    assert_eq!(read(d[4 + 2 * i]), (x.sales_count, x.sales_amount));
                    assert_eq!(read(d[5 + 2 * i]), (x.refund_count, x.refund_amount));
                }
                let stats = &d[4 + 2 * t.tenders.len()..];
                assert_eq!(
                    read(stats[0]),
                    (t.offline_sales.count, t.offline_sales.amount)
                );
            }
            Report::Ism => {
                let d = details("ISMDetail");
                assert_eq!(d.len(), t.items.len());
                for (n, i) in d.iter().zip(&t.items) {
                    assert_eq!(text_of(child(*n, "ItemCode"), "POSCode"), i.sku);
                    assert_eq!(text_of(*n, "Description"), i.description);
                    let p = child(*n, "ISMSellPriceSummary");
                    assert_eq!(amount_of(p, "ActualSalesPrice", currency), i.unit_price);
                    let s = child(p, "ISMSalesTotals");
                    assert_eq!(amount_of(s, "SalesAmount", currency), i.sales_amount);
                    assert_eq!(amount_of(s, "RefundAmount", currency), i.refund_amount);
                    assert_eq!(
                        Quantity::parse(text_of(s, "SalesQuantity")),
                        Some(Quantity(i.sales_quantity))
                    );
                    assert_eq!(
                        Quantity::parse(text_of(s, "RefundQuantity")),
                        Some(Quantity(i.refund_quantity))
                    );
                }
            }
        }
    }
}

/// The moment of a fuzzed payment: the fixed business date its checks use, void due at 0.
fn at_day() -> posedge::payments::At {
    posedge::payments::At {
        void_due_ms: 0,
        count_from: "2026-11-24".into(),
        outside_window: false,
    }
}
