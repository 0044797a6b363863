SELECT * FROM "api_tokens" WHERE hash = @p1 ORDER BY "id" OFFSET 0 ROW FETCH NEXT 1 ROWS ONLY;
-- error: store: find API token: not found;
