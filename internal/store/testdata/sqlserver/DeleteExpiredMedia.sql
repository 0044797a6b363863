DELETE FROM "media" WHERE expires_at < @p1;
