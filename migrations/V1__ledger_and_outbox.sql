-- posedge schema v1: the sales ledger, the outbox, settings and the audit trail.
-- The ledger is append-only: corrections are new rows, never UPDATE/DELETE of a sale.
-- Money columns are INTEGER minor units of the row's currency.

CREATE TABLE sales (
    id              TEXT PRIMARY KEY CHECK (id LIKE 'sale\_%' ESCAPE '\'),
    location_id     TEXT NOT NULL,
    register_id     TEXT NOT NULL,
    client_txn_id   TEXT NOT NULL CHECK (length(client_txn_id) BETWEEN 1 AND 64),
    -- SHA-256 of the canonical request: a replay with other content is a 409.
    request_sha256  TEXT NOT NULL CHECK (length(request_sha256) = 64),
    cashier_id      TEXT NOT NULL,
    currency        TEXT NOT NULL CHECK (length(currency) = 3),
    total           INTEGER NOT NULL,
    business_date   TEXT NOT NULL CHECK (business_date GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    created_at      TEXT NOT NULL,  -- RFC 3339 UTC
    status          TEXT NOT NULL DEFAULT 'recorded' CHECK (status IN ('recorded')),
    UNIQUE (register_id, client_txn_id)
) STRICT;

CREATE INDEX sales_by_business_date ON sales (business_date);

CREATE TABLE sale_lines (
    sale_id          TEXT NOT NULL REFERENCES sales (id),
    line_no          INTEGER NOT NULL,
    sku              TEXT NOT NULL,
    description      TEXT NOT NULL,
    quantity_milli   INTEGER NOT NULL CHECK (quantity_milli > 0),
    unit_price       INTEGER NOT NULL,
    amount           INTEGER NOT NULL,
    merchandise_code TEXT,
    tax_code         TEXT,
    PRIMARY KEY (sale_id, line_no)
) STRICT;

CREATE TABLE sale_taxes (
    sale_id         TEXT NOT NULL REFERENCES sales (id),
    tax_code        TEXT NOT NULL,
    taxable_amount  INTEGER NOT NULL,
    amount          INTEGER NOT NULL,
    PRIMARY KEY (sale_id, tax_code)
) STRICT;

CREATE TABLE sale_tenders (
    sale_id     TEXT NOT NULL REFERENCES sales (id),
    tender_no   INTEGER NOT NULL,
    method      TEXT NOT NULL,
    amount      INTEGER NOT NULL,
    payment_id  TEXT,
    PRIMARY KEY (sale_id, tender_no)
) STRICT;

-- The ledger is append-only (invariant 7): corrections are new rows, never deletions.
CREATE TRIGGER sales_no_delete BEFORE DELETE ON sales
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: record a correction instead'); END;
CREATE TRIGGER sale_lines_no_change BEFORE DELETE ON sale_lines
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: record a correction instead'); END;
CREATE TRIGGER sale_taxes_no_change BEFORE DELETE ON sale_taxes
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: record a correction instead'); END;
CREATE TRIGGER sale_tenders_no_change BEFORE DELETE ON sale_tenders
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: record a correction instead'); END;
CREATE TRIGGER sale_amounts_fixed BEFORE UPDATE OF total, currency, register_id, client_txn_id ON sales
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: record a correction instead'); END;

-- Every upstream effect, inserted in the same transaction as the fact that causes it.
-- idempotency_key is fixed here, at insert, and sent on every attempt forever.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,
    upstream         TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'in_flight', 'delivered', 'dead', 'discarded')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Due time and lease on the dispatcher's monotonic clock (milliseconds), not wall time.
    due_ms           INTEGER NOT NULL DEFAULT 0,
    lease_until_ms   INTEGER,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    last_error       TEXT
) STRICT;

-- Claim order: priority (higher first), then age. due_ms is in the index so rows still
-- backing off are skipped without touching the table.
CREATE INDEX outbox_claim ON outbox (upstream, state, priority DESC, id, due_ms);
-- Queue statistics by kind (covering) and the oldest waiting row, without table scans.
CREATE INDEX outbox_by_state ON outbox (state, kind, attempts);
CREATE INDEX outbox_oldest ON outbox (state, id);
-- The next due time of rows backing off, without scanning the backlog.
CREATE INDEX outbox_next_due ON outbox (upstream, state, due_ms);

-- Small durable settings: forced network modes, the dispatcher clock.
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) STRICT;

-- Append-only, hash-chained audit trail (invariant 10). hash = SHA-256 over prev_hash and
-- every other column; `posedge audit verify` recomputes the chain.
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,       -- RFC 3339 UTC
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,       -- register, manager, admin id, or "posedge"
    subject    TEXT,                -- payment id, outbox id, upstream …
    network    TEXT NOT NULL,       -- the network status at that moment (JSON)
    details    TEXT NOT NULL,       -- JSON
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE
) STRICT;

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
