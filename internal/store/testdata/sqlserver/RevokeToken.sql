UPDATE "api_tokens" SET "revoked_at"=@p1 WHERE id = @p2 AND revoked_at IS NULL;
SELECT count(*) FROM "api_tokens" WHERE id = @p1;
-- error: store: revoke token 7: not found;
