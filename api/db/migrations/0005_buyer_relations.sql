-- migration: api/db/migrations/0005_buyer_relations.sql
-- What each buyer subscribes to, where it serves, and where it holds exclusivity.
BEGIN;

CREATE TABLE IF NOT EXISTS buyer_offers (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    buyer_id    bigint      NOT NULL,
    offer_id    bigint      NOT NULL,
    price_cents bigint      NOT NULL,
    currency    char(3)     NOT NULL,
    daily_cap   integer,
    monthly_cap integer,
    priority    integer     NOT NULL DEFAULT 100,
    active      boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT buyer_offers_id_pk PRIMARY KEY (id),
    CONSTRAINT buyer_offers_buyer_offer_key UNIQUE (buyer_id, offer_id),
    CONSTRAINT buyer_offers_buyer_fkey FOREIGN KEY (buyer_id)
        REFERENCES buyers (id) ON DELETE CASCADE,
    CONSTRAINT buyer_offers_offer_fkey FOREIGN KEY (offer_id, currency)
        REFERENCES offers (id, currency) ON DELETE RESTRICT,
    CONSTRAINT buyer_offers_price_cents_check CHECK (price_cents >= 0),
    CONSTRAINT buyer_offers_currency_format_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT buyer_offers_daily_cap_check CHECK (daily_cap IS NULL OR daily_cap > 0),
    CONSTRAINT buyer_offers_monthly_cap_check CHECK (monthly_cap IS NULL OR monthly_cap > 0),
    CONSTRAINT buyer_offers_caps_order_check
        CHECK (daily_cap IS NULL OR monthly_cap IS NULL OR monthly_cap >= daily_cap),
    CONSTRAINT buyer_offers_priority_check CHECK (priority >= 0)
);

-- Routing: the active subscriptions of one offer, already in priority order.
CREATE INDEX IF NOT EXISTS buyer_offers_active_offer_idx
    ON buyer_offers (offer_id, priority, buyer_id)
    WHERE active;

CREATE TABLE IF NOT EXISTS buyer_service_areas (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    buyer_id    bigint      NOT NULL,
    market_id   bigint      NOT NULL,
    postal_code text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT buyer_service_areas_id_pk PRIMARY KEY (id),
    CONSTRAINT buyer_service_areas_buyer_market_postal_code_key
        UNIQUE (buyer_id, market_id, postal_code),
    CONSTRAINT buyer_service_areas_buyer_fkey FOREIGN KEY (buyer_id)
        REFERENCES buyers (id) ON DELETE CASCADE,
    CONSTRAINT buyer_service_areas_market_fkey FOREIGN KEY (market_id)
        REFERENCES markets (id) ON DELETE RESTRICT,
    CONSTRAINT buyer_service_areas_postal_code_format_check CHECK (
        char_length(postal_code) BETWEEN 3 AND 10
        AND postal_code ~ '^[0-9A-Z]+(?:[ -][0-9A-Z]+)?$'
    )
);

-- Routing: the buyers serving one postal code of one market (index-only scan).
CREATE INDEX IF NOT EXISTS buyer_service_areas_market_postal_code_idx
    ON buyer_service_areas (market_id, postal_code)
    INCLUDE (buyer_id);

CREATE TABLE IF NOT EXISTS offer_exclusivities (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    buyer_id    bigint      NOT NULL,
    offer_id    bigint      NOT NULL,
    postal_code text        NOT NULL,
    period      tstzrange   NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT offer_exclusivities_id_pk PRIMARY KEY (id),
    CONSTRAINT offer_exclusivities_buyer_offer_fkey FOREIGN KEY (buyer_id, offer_id)
        REFERENCES buyer_offers (buyer_id, offer_id) ON DELETE CASCADE,
    CONSTRAINT offer_exclusivities_postal_code_format_check CHECK (
        char_length(postal_code) BETWEEN 3 AND 10
        AND postal_code ~ '^[0-9A-Z]+(?:[ -][0-9A-Z]+)?$'
    ),
    CONSTRAINT offer_exclusivities_period_not_empty_check CHECK (NOT isempty(period)),
    CONSTRAINT offer_exclusivities_no_overlap_excl EXCLUDE USING gist (
        offer_id WITH =,
        postal_code WITH =,
        period WITH &&
    )
);

COMMIT;
