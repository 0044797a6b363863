UPDATE "bmcs" SET "media_inserted"=@p1,"media_since"=@p2,"updated_at"=@p3 WHERE host_name = @p4;
-- error: store: set BMC media of node01: not found;
