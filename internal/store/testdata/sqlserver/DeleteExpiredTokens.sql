DELETE FROM "api_tokens" WHERE kind = @p1 AND expires_at IS NOT NULL AND expires_at < @p2;
