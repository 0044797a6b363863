SELECT hosts.state AS state, COUNT(*) AS n FROM "hosts" WHERE (hosts.name LIKE @p1 ESCAPE '!') GROUP BY "hosts"."state";
-- error: store: count hosts: dry run mode unsupported;
