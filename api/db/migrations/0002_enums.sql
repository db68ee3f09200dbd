-- migration: api/db/migrations/0002_enums.sql
-- The four enums, labels in their business order. CREATE TYPE has no IF NOT
-- EXISTS, so each one is guarded by a catalog lookup in public.
BEGIN;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_type t
        JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typname = 'lead_status' AND n.nspname = 'public'
    ) THEN
        CREATE TYPE public.lead_status AS ENUM (
            'received', 'validated', 'rejected', 'duplicate', 'routed', 'delivered', 'returned'
        );
    END IF;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_type t
        JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typname = 'billing_status' AND n.nspname = 'public'
    ) THEN
        CREATE TYPE public.billing_status AS ENUM (
            'unbilled', 'billable', 'invoiced', 'credited', 'non_billable'
        );
    END IF;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_type t
        JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typname = 'invoice_status' AND n.nspname = 'public'
    ) THEN
        CREATE TYPE public.invoice_status AS ENUM (
            'draft', 'issued', 'paid', 'void'
        );
    END IF;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_type t
        JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typname = 'payment_method' AND n.nspname = 'public'
    ) THEN
        CREATE TYPE public.payment_method AS ENUM (
            'ach', 'card', 'wire', 'check'
        );
    END IF;
END
$$;

COMMIT;
