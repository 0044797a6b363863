SELECT count(*) FROM "hosts" WHERE name = @p1;
-- error: store: set BMC of node01: not found;
