SELECT * FROM "api_tokens" WHERE owner = @p1 AND kind IN (@p2) ORDER BY id;
