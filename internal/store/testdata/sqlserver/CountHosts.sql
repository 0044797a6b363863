SELECT state, COUNT(*) AS n FROM "hosts" GROUP BY "state";
-- error: store: count hosts: dry run mode unsupported;
