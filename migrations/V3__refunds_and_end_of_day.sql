-- V3: refunds in the ledger, and the end-of-day syncs to the Conexxus back office.

-- A refund is a row of its own (the ledger is never rewritten): amounts are what went back
-- to the customer, positive, like a sale's. `original_sale_id` names the sale it refunds,
-- when the register knows it.
ALTER TABLE sales ADD COLUMN kind TEXT NOT NULL DEFAULT 'sale' CHECK (kind IN ('sale', 'refund'));
ALTER TABLE sales ADD COLUMN original_sale_id TEXT REFERENCES sales (id);

-- One row per end-of-day sync queued: its business date, what queued it and the outbox rows
-- of its documents. The automatic ones (the schedule, or the catch-up at start-up for a date
-- that closed while the box was off) happen once per date: the unique index refuses a second.
CREATE TABLE eod_syncs (
    id             INTEGER PRIMARY KEY,
    business_date  TEXT NOT NULL CHECK (business_date GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    trigger        TEXT NOT NULL CHECK (trigger IN ('schedule', 'catch_up', 'manual')),
    created_at     TEXT NOT NULL,
    outbox_ids     TEXT NOT NULL  -- JSON array
) STRICT;

CREATE UNIQUE INDEX eod_syncs_once ON eod_syncs (business_date) WHERE trigger != 'manual';

CREATE TRIGGER eod_syncs_no_update BEFORE UPDATE ON eod_syncs
BEGIN SELECT RAISE(ABORT, 'eod_syncs rows are never rewritten'); END;

-- V1 fixed the amounts and keys; the kind, the original and the date a sale belongs to (the
-- end-of-day reports and the daily offline limit read it) are fixed as well.
CREATE TRIGGER sale_kind_fixed BEFORE UPDATE OF kind, original_sale_id, business_date, created_at ON sales
BEGIN SELECT RAISE(ABORT, 'a sale is never rewritten; record a refund instead'); END;
