-- Views and materialized views (the spec defines none; listed to catch extras).
SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
       pg_get_viewdef(c.oid, true) AS definition
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('v', 'm')
ORDER BY c.relname;
