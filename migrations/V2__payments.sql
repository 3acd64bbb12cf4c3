-- posedge schema v2: payments (cash and card, online and offline).
-- A payment's idempotency_key is fixed at insert and is the Stripe Idempotency-Key of every
-- attempt: the online one and every later forward (DESIGN.md invariant 3).

CREATE TABLE payments (
    id                 TEXT PRIMARY KEY CHECK (id LIKE 'pay\_%' ESCAPE '\'),
    location_id        TEXT NOT NULL,
    register_id        TEXT NOT NULL,
    client_payment_id  TEXT NOT NULL CHECK (length(client_payment_id) BETWEEN 1 AND 64),
    request_sha256     TEXT NOT NULL CHECK (length(request_sha256) = 64),
    cashier_id         TEXT NOT NULL,
    method             TEXT NOT NULL CHECK (method IN ('cash', 'card')),
    amount             INTEGER NOT NULL CHECK (amount > 0),
    currency           TEXT NOT NULL CHECK (length(currency) = 3),
    payment_method     TEXT CHECK (payment_method IS NULL OR payment_method LIKE 'pm\_%' ESCAPE '\'),
    card_brand         TEXT CHECK (card_brand IS NULL OR length(card_brand) <= 20),
    card_last4         TEXT CHECK (card_last4 IS NULL OR (length(card_last4) = 4 AND card_last4 GLOB '[0-9][0-9][0-9][0-9]')),
    status             TEXT NOT NULL CHECK (status IN (
                           'recorded', 'authorizing', 'authorized', 'captured', 'declined',
                           'approved_offline', 'pending_approval', 'refused_offline', 'rejected',
                           'forwarding', 'declined_upstream', 'expired')),
    mode               TEXT NOT NULL CHECK (mode IN ('online', 'offline')),
    business_date      TEXT NOT NULL,
    idempotency_key    TEXT NOT NULL UNIQUE,
    -- An online attempt was sent (its outcome may be unknown): a refusal must void it.
    online_attempted   INTEGER NOT NULL DEFAULT 0 CHECK (online_attempted IN (0, 1)),
    stripe_payment_intent TEXT,
    decline_code       TEXT,
    message            TEXT,
    approved_by        TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    UNIQUE (register_id, client_payment_id)
) STRICT;

-- A payment is money: its row changes status, never disappears or changes amount.
CREATE TRIGGER payments_no_delete BEFORE DELETE ON payments
BEGIN SELECT RAISE(ABORT, 'payments are never deleted'); END;
CREATE TRIGGER payments_amount_fixed BEFORE UPDATE OF amount, currency, method, idempotency_key ON payments
BEGIN SELECT RAISE(ABORT, 'a payment''s amount, method and idempotency key are fixed at creation'); END;

CREATE INDEX payments_offline_by_day ON payments (location_id, mode, business_date, status);
CREATE INDEX payments_by_status ON payments (status);

-- "Is this payment already paying for a sale?" without a scan.
CREATE INDEX sale_tenders_by_payment ON sale_tenders (payment_id) WHERE payment_id IS NOT NULL;

-- Offline limit counters, kept by triggers in the same transaction as every status change,
-- so checking a limit reads one or two rows instead of scanning the day's payments.
-- approved: card payments approved offline, by business date (never decremented: once
--           approved, a payment counts toward its day whatever Stripe says later).
CREATE TABLE offline_daily (
    location_id    TEXT NOT NULL,
    business_date  TEXT NOT NULL,
    approved       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (location_id, business_date)
) STRICT;

-- outstanding: approved offline and not yet accepted or refused by Stripe.
CREATE TABLE offline_outstanding (
    location_id  TEXT PRIMARY KEY,
    amount       INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TRIGGER payments_offline_counters AFTER UPDATE OF status ON payments
WHEN NEW.method = 'card' AND NEW.status IS NOT OLD.status
BEGIN
    INSERT INTO offline_daily (location_id, business_date, approved)
        SELECT NEW.location_id, NEW.business_date, NEW.amount
        WHERE NEW.mode = 'offline' AND NEW.status = 'approved_offline'
          AND OLD.status NOT IN ('approved_offline', 'forwarding', 'captured', 'authorized',
                                 'declined_upstream', 'expired')
    ON CONFLICT (location_id, business_date) DO UPDATE SET approved = approved + excluded.approved;
    INSERT INTO offline_outstanding (location_id, amount)
        SELECT NEW.location_id,
               (CASE WHEN NEW.mode = 'offline' AND NEW.status IN ('approved_offline', 'forwarding')
                     THEN NEW.amount ELSE 0 END)
             - (CASE WHEN OLD.mode = 'offline' AND OLD.status IN ('approved_offline', 'forwarding')
                     THEN OLD.amount ELSE 0 END)
        WHERE true
    ON CONFLICT (location_id) DO UPDATE SET amount = amount + excluded.amount;
END;
