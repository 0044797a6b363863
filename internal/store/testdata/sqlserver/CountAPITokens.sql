SELECT count(*) FROM "api_tokens" WHERE kind = @p1;
