SELECT * FROM "users" ORDER BY source, name;
