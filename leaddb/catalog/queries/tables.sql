-- Ordinary and partitioned tables of the schema.
SELECT n.nspname AS schema, c.relname AS name,
       c.relkind::text AS kind,
       c.relpersistence::text AS persistence
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
ORDER BY c.relname;
