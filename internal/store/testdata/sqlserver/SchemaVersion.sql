SELECT MAX(version) FROM "schema_migrations";
-- error: store: schema version: dry run mode unsupported;
