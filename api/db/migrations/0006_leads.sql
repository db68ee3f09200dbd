-- migration: api/db/migrations/0006_leads.sql
-- The leads: intake (idempotent per source), duplicate detection, routing and
-- billing state. Rows are financial history: no parent deletion removes them.
BEGIN;

CREATE TABLE IF NOT EXISTS leads (
    id                   uuid           NOT NULL DEFAULT gen_random_uuid(),
    source_id            bigint         NOT NULL,
    offer_id             bigint         NOT NULL,
    buyer_id             bigint,
    idempotency_key      text           NOT NULL,
    dedupe_key           text           NOT NULL,
    duplicate_of_lead_id uuid,
    status               lead_status    NOT NULL DEFAULT 'received',
    billing_status       billing_status NOT NULL DEFAULT 'unbilled',
    rejection_reason     text,
    price_cents          bigint,
    currency             char(3)        NOT NULL,
    first_name           text,
    last_name            text,
    email                text,
    phone                text,
    postal_code          text,
    payload              jsonb          NOT NULL DEFAULT '{}',
    received_at          timestamptz    NOT NULL DEFAULT now(),
    validated_at         timestamptz,
    routed_at            timestamptz,
    delivered_at         timestamptz,
    CONSTRAINT leads_id_pk PRIMARY KEY (id),
    CONSTRAINT leads_source_idempotency_key_key UNIQUE (source_id, idempotency_key),
    -- Target of invoice_line_items_lead_fkey: a lead is billed to its own buyer, in its currency.
    CONSTRAINT leads_id_buyer_currency_key UNIQUE (id, buyer_id, currency),
    CONSTRAINT leads_source_fkey FOREIGN KEY (source_id)
        REFERENCES sources (id) ON DELETE RESTRICT,
    CONSTRAINT leads_offer_fkey FOREIGN KEY (offer_id, currency)
        REFERENCES offers (id, currency) ON DELETE RESTRICT,
    CONSTRAINT leads_buyer_fkey FOREIGN KEY (buyer_id)
        REFERENCES buyers (id) ON DELETE RESTRICT,
    CONSTRAINT leads_buyer_offer_fkey FOREIGN KEY (buyer_id, offer_id)
        REFERENCES buyer_offers (buyer_id, offer_id) ON DELETE RESTRICT,
    CONSTRAINT leads_duplicate_of_fkey FOREIGN KEY (duplicate_of_lead_id)
        REFERENCES leads (id) ON DELETE RESTRICT,
    CONSTRAINT leads_idempotency_key_length_check
        CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    CONSTRAINT leads_dedupe_key_format_check CHECK (dedupe_key ~ '^[0-9a-f]{64}$'),
    CONSTRAINT leads_duplicate_of_status_check
        CHECK ((status = 'duplicate') = (duplicate_of_lead_id IS NOT NULL)),
    CONSTRAINT leads_duplicate_of_not_self_check CHECK (duplicate_of_lead_id <> id),
    CONSTRAINT leads_rejection_reason_check
        CHECK (status <> 'rejected' OR rejection_reason IS NOT NULL),
    CONSTRAINT leads_routed_requires_buyer_check
        CHECK (status NOT IN ('routed', 'delivered', 'returned') OR buyer_id IS NOT NULL),
    CONSTRAINT leads_billing_requires_buyer_and_price_check
        CHECK (billing_status NOT IN ('billable', 'invoiced')
               OR (buyer_id IS NOT NULL AND price_cents IS NOT NULL)),
    CONSTRAINT leads_price_cents_check CHECK (price_cents >= 0),
    CONSTRAINT leads_currency_format_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT leads_email_format_check CHECK (
        char_length(email) <= 254
        AND email ~ '^[A-Za-z0-9.!#$%&''*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$'
    ),
    CONSTRAINT leads_phone_format_check CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    CONSTRAINT leads_postal_code_format_check CHECK (
        char_length(postal_code) BETWEEN 3 AND 10
        AND postal_code ~ '^[0-9A-Z]+(?:[ -][0-9A-Z]+)?$'
    ),
    CONSTRAINT leads_payload_object_check CHECK (jsonb_typeof(payload) = 'object')
);

-- Duplicate detection: the most recent lead with a dedupe key inside a time window.
CREATE INDEX IF NOT EXISTS leads_dedupe_key_received_at_idx
    ON leads (dedupe_key, received_at);

-- Work queue: the oldest leads in a given status.
CREATE INDEX IF NOT EXISTS leads_status_received_at_idx
    ON leads (status, received_at);

-- Invoicing: a buyer's billable leads; small because leads leave it once invoiced.
CREATE INDEX IF NOT EXISTS leads_billable_buyer_idx
    ON leads (buyer_id, received_at)
    WHERE billing_status = 'billable';

COMMIT;
