UPDATE "api_tokens" SET "last_used_at"=@p1 WHERE id = @p2;
-- error: store: touch token 7: not found;
