SELECT * FROM "media" WHERE host_name = @p1 AND pub_id = @p2 ORDER BY "host_name" OFFSET 0 ROW FETCH NEXT 1 ROWS ONLY;
