-- migration: api/db/migrations/0004_offers_sources_buyers.sql
-- What is sold (offers), who supplies leads (sources) and who buys them (buyers).
BEGIN;

CREATE TABLE IF NOT EXISTS offers (
    id                   bigint      GENERATED ALWAYS AS IDENTITY,
    vertical_id          bigint      NOT NULL,
    market_id            bigint      NOT NULL,
    validation_policy_id bigint      NOT NULL,
    routing_policy_id    bigint      NOT NULL,
    name                 text        NOT NULL,
    base_price_cents     bigint      NOT NULL,
    currency             char(3)     NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT offers_id_pk PRIMARY KEY (id),
    CONSTRAINT offers_vertical_market_name_key UNIQUE (vertical_id, market_id, name),
    -- Target of the (offer_id, currency) keys: every price of an offer is in its currency.
    CONSTRAINT offers_id_currency_key UNIQUE (id, currency),
    CONSTRAINT offers_vertical_fkey FOREIGN KEY (vertical_id)
        REFERENCES verticals (id) ON DELETE RESTRICT,
    CONSTRAINT offers_market_fkey FOREIGN KEY (market_id)
        REFERENCES markets (id) ON DELETE RESTRICT,
    CONSTRAINT offers_validation_policy_fkey FOREIGN KEY (validation_policy_id, vertical_id)
        REFERENCES validation_policies (id, vertical_id) ON DELETE RESTRICT,
    CONSTRAINT offers_routing_policy_fkey FOREIGN KEY (routing_policy_id)
        REFERENCES routing_policies (id) ON DELETE RESTRICT,
    CONSTRAINT offers_base_price_cents_check CHECK (base_price_cents >= 0),
    CONSTRAINT offers_currency_format_check CHECK (currency ~ '^[A-Z]{3}$')
);

CREATE TABLE IF NOT EXISTS sources (
    id           bigint      GENERATED ALWAYS AS IDENTITY,
    name         text        NOT NULL,
    api_key_hash text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sources_id_pk PRIMARY KEY (id),
    CONSTRAINT sources_name_key UNIQUE (name),
    CONSTRAINT sources_api_key_hash_key UNIQUE (api_key_hash)
);

CREATE TABLE IF NOT EXISTS buyers (
    id                     bigint         GENERATED ALWAYS AS IDENTITY,
    name                   text           NOT NULL,
    email                  text           NOT NULL,
    default_payment_method payment_method,
    credit_limit_cents     bigint         NOT NULL DEFAULT 0,
    currency               char(3)        NOT NULL,
    created_at             timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT buyers_id_pk PRIMARY KEY (id),
    CONSTRAINT buyers_email_format_check CHECK (
        char_length(email) <= 254
        AND email ~ '^[A-Za-z0-9.!#$%&''*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$'
    ),
    CONSTRAINT buyers_credit_limit_cents_check CHECK (credit_limit_cents >= 0),
    CONSTRAINT buyers_currency_format_check CHECK (currency ~ '^[A-Z]{3}$')
);

COMMIT;
