SELECT * FROM "profiles" WITH (UPDLOCK, ROWLOCK) WHERE name = @p1 ORDER BY "name" OFFSET 0 ROW FETCH NEXT 1 ROWS ONLY ;
UPDATE "profiles" SET "clean_method"=@p1,"cmdline"=@p2,"config"=@p3,"flip_on_serve"=@p4,"image"=@p5,"image_sha256"=@p6,"initrds"=@p7,"installer"=@p8,"kernel"=@p9,"target_disk"=@p10,"updated_at"=@p11 WHERE name = @p12;
