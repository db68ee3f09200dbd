-- Constraints of every kind, with PostgreSQL's own definition (ON DELETE included).
SELECT n.nspname AS schema, c.relname AS table_name, con.conname AS name,
       con.contype::text AS kind,
       pg_get_constraintdef(con.oid, true) AS definition,
       con.condeferrable AS deferrable,
       con.condeferred AS deferred,
       con.convalidated AS validated
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s
ORDER BY c.relname, con.conname;
