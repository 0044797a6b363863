UPDATE "api_tokens" SET "revoked_at"=@p1 WHERE (owner = @p2 AND revoked_at IS NULL) AND kind IN (@p3);
