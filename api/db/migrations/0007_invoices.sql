-- migration: api/db/migrations/0007_invoices.sql
-- Invoices and their lines. A line pins its invoice and its lead to one buyer
-- and one currency; a lead appears on at most one line of any invoice.
BEGIN;

CREATE TABLE IF NOT EXISTS invoices (
    id             bigint         GENERATED ALWAYS AS IDENTITY,
    invoice_number text           NOT NULL,
    buyer_id       bigint         NOT NULL,
    status         invoice_status NOT NULL DEFAULT 'draft',
    currency       char(3)        NOT NULL,
    period_start   timestamptz    NOT NULL,
    period_end     timestamptz    NOT NULL,
    subtotal_cents bigint         NOT NULL DEFAULT 0,
    tax_cents      bigint         NOT NULL DEFAULT 0,
    total_cents    bigint         NOT NULL DEFAULT 0,
    issued_at      timestamptz,
    due_at         timestamptz,
    paid_at        timestamptz,
    payment_method payment_method,
    created_at     timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT invoices_id_pk PRIMARY KEY (id),
    CONSTRAINT invoices_invoice_number_key UNIQUE (invoice_number),
    -- Target of invoice_line_items_invoice_fkey: a line is in its invoice's buyer and currency.
    CONSTRAINT invoices_id_buyer_currency_key UNIQUE (id, buyer_id, currency),
    CONSTRAINT invoices_buyer_fkey FOREIGN KEY (buyer_id)
        REFERENCES buyers (id) ON DELETE RESTRICT,
    CONSTRAINT invoices_currency_format_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT invoices_period_check CHECK (period_end > period_start),
    CONSTRAINT invoices_subtotal_cents_check CHECK (subtotal_cents >= 0),
    CONSTRAINT invoices_tax_cents_check CHECK (tax_cents >= 0),
    CONSTRAINT invoices_total_cents_check CHECK (total_cents >= 0),
    CONSTRAINT invoices_total_equals_subtotal_plus_tax_check
        CHECK (total_cents = subtotal_cents + tax_cents),
    CONSTRAINT invoices_issued_requires_dates_check
        CHECK (status IN ('draft', 'void') OR (issued_at IS NOT NULL AND due_at IS NOT NULL)),
    CONSTRAINT invoices_paid_requires_payment_check
        CHECK (status <> 'paid' OR (paid_at IS NOT NULL AND payment_method IS NOT NULL)),
    CONSTRAINT invoices_due_after_issued_check CHECK (due_at >= issued_at)
);

-- A buyer's invoices by period; also serves invoices_buyer_fkey checks.
CREATE INDEX IF NOT EXISTS invoices_buyer_period_idx
    ON invoices (buyer_id, period_start);

CREATE TABLE IF NOT EXISTS invoice_line_items (
    id               bigint      GENERATED ALWAYS AS IDENTITY,
    invoice_id       bigint      NOT NULL,
    buyer_id         bigint      NOT NULL,
    currency         char(3)     NOT NULL,
    lead_id          uuid        NOT NULL,
    description      text,
    quantity         integer     NOT NULL DEFAULT 1,
    unit_price_cents bigint      NOT NULL,
    amount_cents     bigint      NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT invoice_line_items_id_pk PRIMARY KEY (id),
    CONSTRAINT invoice_line_items_lead_key UNIQUE (lead_id),
    CONSTRAINT invoice_line_items_invoice_fkey FOREIGN KEY (invoice_id, buyer_id, currency)
        REFERENCES invoices (id, buyer_id, currency) ON DELETE CASCADE,
    CONSTRAINT invoice_line_items_lead_fkey FOREIGN KEY (lead_id, buyer_id, currency)
        REFERENCES leads (id, buyer_id, currency) ON DELETE RESTRICT,
    CONSTRAINT invoice_line_items_currency_format_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT invoice_line_items_quantity_check CHECK (quantity > 0),
    CONSTRAINT invoice_line_items_unit_price_cents_check CHECK (unit_price_cents >= 0),
    CONSTRAINT invoice_line_items_amount_check CHECK (amount_cents = quantity * unit_price_cents)
);

-- The lines of one invoice in order; also serves the cascade when a draft invoice is deleted.
CREATE INDEX IF NOT EXISTS invoice_line_items_invoice_idx
    ON invoice_line_items (invoice_id, id);

COMMIT;
