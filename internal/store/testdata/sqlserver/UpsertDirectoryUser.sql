SELECT * FROM "users" WITH (UPDLOCK, ROWLOCK) WHERE source = @p1 AND name = @p2 ORDER BY "id" OFFSET 0 ROW FETCH NEXT 1 ROWS ONLY ;
UPDATE "users" SET "checked_at"=@p1,"disabled"=@p2,"dn"=@p3,"grants"=@p4,"password_hash"=@p5,"updated_at"=@p6 WHERE id = @p7;
