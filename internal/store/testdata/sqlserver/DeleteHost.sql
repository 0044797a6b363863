DELETE FROM "hosts" WHERE name = @p1;
-- error: store: delete host node01: not found;
