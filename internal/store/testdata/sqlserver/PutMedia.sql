DELETE FROM "media" WHERE host_name = @p1;
INSERT INTO "media" ("host_name","pub_id","data","etag","mod_time","expires_at") VALUES (@p1,@p2,@p3,@p4,@p5,@p6);
