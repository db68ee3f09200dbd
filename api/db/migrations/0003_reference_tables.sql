-- migration: api/db/migrations/0003_reference_tables.sql
-- Reference data: where leads are sold, what is sold, and the policies that
-- validate and route them.
BEGIN;

CREATE TABLE IF NOT EXISTS markets (
    id           bigint      GENERATED ALWAYS AS IDENTITY,
    code         text        NOT NULL,
    name         text        NOT NULL,
    country_code char(2)     NOT NULL,
    timezone     text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT markets_id_pk PRIMARY KEY (id),
    CONSTRAINT markets_code_key UNIQUE (code),
    CONSTRAINT markets_code_format_check CHECK (code ~ '^[a-z0-9_]+$'),
    CONSTRAINT markets_country_code_format_check CHECK (country_code ~ '^[A-Z]{2}$'),
    CONSTRAINT markets_timezone_format_check
        CHECK (timezone ~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$')
);

CREATE TABLE IF NOT EXISTS verticals (
    id         bigint      GENERATED ALWAYS AS IDENTITY,
    slug       text        NOT NULL,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT verticals_id_pk PRIMARY KEY (id),
    CONSTRAINT verticals_slug_key UNIQUE (slug),
    CONSTRAINT verticals_slug_format_check CHECK (slug ~ '^[a-z0-9_]+$')
);

CREATE TABLE IF NOT EXISTS validation_policies (
    id               bigint      GENERATED ALWAYS AS IDENTITY,
    vertical_id      bigint      NOT NULL,
    name             text        NOT NULL,
    version          integer     NOT NULL DEFAULT 1,
    duplicate_window interval    NOT NULL,
    required_fields  text[]      NOT NULL DEFAULT '{}',
    rules            jsonb       NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT validation_policies_id_pk PRIMARY KEY (id),
    CONSTRAINT validation_policies_vertical_name_version_key UNIQUE (vertical_id, name, version),
    -- Target of offers_validation_policy_fkey: an offer's policy is of the offer's vertical.
    CONSTRAINT validation_policies_id_vertical_key UNIQUE (id, vertical_id),
    CONSTRAINT validation_policies_vertical_fkey FOREIGN KEY (vertical_id)
        REFERENCES verticals (id) ON DELETE RESTRICT,
    CONSTRAINT validation_policies_version_check CHECK (version >= 1),
    CONSTRAINT validation_policies_duplicate_window_check CHECK (duplicate_window > interval '0'),
    CONSTRAINT validation_policies_rules_object_check CHECK (jsonb_typeof(rules) = 'object')
);

CREATE TABLE IF NOT EXISTS routing_policies (
    id         bigint      GENERATED ALWAYS AS IDENTITY,
    name       text        NOT NULL,
    strategy   text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT routing_policies_id_pk PRIMARY KEY (id),
    CONSTRAINT routing_policies_name_key UNIQUE (name),
    CONSTRAINT routing_policies_strategy_check
        CHECK (strategy IN ('priority', 'round_robin', 'highest_bid'))
);

COMMIT;
