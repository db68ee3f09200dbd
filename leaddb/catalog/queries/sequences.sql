-- Sequences with the identity or serial column that owns them.
SELECT n.nspname AS schema, s.relname AS name,
       format_type(q.seqtypid, NULL) AS type,
       q.seqstart AS start, q.seqincrement AS increment,
       t.relname AS owned_by_table, a.attname AS owned_by_column
FROM pg_sequence q
JOIN pg_class s ON s.oid = q.seqrelid
JOIN pg_namespace n ON n.oid = s.relnamespace
LEFT JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class t ON t.oid = d.refobjid
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE n.nspname = %(schema)s
ORDER BY s.relname;
