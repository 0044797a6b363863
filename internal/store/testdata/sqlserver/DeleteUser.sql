DELETE FROM "users" WHERE source = @p1 AND name = @p2;
-- error: store: delete user local:alice: not found;
