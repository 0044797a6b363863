UPDATE "hosts" SET "inv_arch"=@p1,"inv_asset"=@p2,"inv_mac"=@p3,"inv_platform"=@p4,"inv_seen_at"=@p5,"inv_serial"=@p6,"inv_uuid"=@p7,"updated_at"=@p8 WHERE name = @p9;
-- error: store: set inventory of node01: not found;
