SELECT * FROM "users" WITH (UPDLOCK, ROWLOCK) WHERE source = @p1 AND name = @p2 ORDER BY "id" OFFSET 0 ROW FETCH NEXT 1 ROWS ONLY ;
UPDATE "users" SET "checked_at"=@p1,"disabled"=@p2,"dn"=@p3,"grants"=@p4,"password_hash"=@p5,"updated_at"=@p6 WHERE id = @p7;
INSERT INTO "events" ("host_name","actor","event","action","from_state","to_state","attempt","fields","reason","request_id","client_addr","subject","time") OUTPUT INSERTED."id" VALUES (@p1,@p2,@p3,@p4,@p5,@p6,@p7,@p8,@p9,@p10,@p11,@p12,@p13);
