-- Indexes, including those behind constraints, with PostgreSQL's own definition.
SELECT n.nspname AS schema, t.relname AS table_name, i.relname AS name,
       pg_get_indexdef(x.indexrelid) AS definition,
       am.amname AS method,
       x.indisunique AS is_unique,
       x.indisprimary AS is_primary,
       pg_get_expr(x.indpred, x.indrelid) AS predicate,
       con.conname AS constraint_name
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = i.relam
LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.contype IN ('p', 'u', 'x')
WHERE n.nspname = %(schema)s
ORDER BY t.relname, i.relname;
