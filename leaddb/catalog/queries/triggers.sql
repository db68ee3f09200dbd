-- User triggers (the spec allows none; listed to catch extras).
SELECT n.nspname AS schema, c.relname AS table_name, tg.tgname AS name,
       pg_get_triggerdef(tg.oid, true) AS definition
FROM pg_trigger tg
JOIN pg_class c ON c.oid = tg.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND NOT tg.tgisinternal
ORDER BY c.relname, tg.tgname;
