DELETE FROM "media" WHERE host_name = @p1;
