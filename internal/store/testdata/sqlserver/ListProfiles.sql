SELECT * FROM "profiles" ORDER BY name;
