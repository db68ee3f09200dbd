-- migration: api/db/migrations/0001_extensions.sql
-- btree_gist gives bigint and text GiST operator classes, so one GiST index can
-- combine equality with range overlap (offer_exclusivities_no_overlap_excl).
BEGIN;

CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public;

COMMIT;
