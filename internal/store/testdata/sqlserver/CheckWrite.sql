SELECT MAX(version) FROM "schema_migrations";
-- error: store: write check sqlserver: dry run mode unsupported;
