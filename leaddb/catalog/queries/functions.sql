-- Functions and procedures the schema defines (the spec allows none; listed to catch extras).
SELECT n.nspname AS schema, p.proname AS name,
       pg_get_function_identity_arguments(p.oid) AS arguments,
       p.prokind::text AS kind
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
WHERE n.nspname = %(schema)s AND d.objid IS NULL
ORDER BY p.proname, 3;
