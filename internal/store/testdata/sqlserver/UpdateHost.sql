SELECT * FROM "hosts" WITH (UPDLOCK, ROWLOCK) WHERE name = @p1 ORDER BY "name" OFFSET 0 ROW FETCH NEXT 1 ROWS ONLY ;
SELECT * FROM "host_macs" WHERE mac IN (@p1) AND host_name <> @p2 ORDER BY mac;
SELECT "name" FROM "hosts" WHERE ipv4 >= @p1 AND ipv4 < @p2 AND name <> @p3 ORDER BY name OFFSET 0 ROW FETCH NEXT 1 ROWS ONLY;
UPDATE "hosts" SET "attempt"=@p1,"callback_hash"=@p2,"clean_then_install"=@p3,"deadline"=@p4,"dns"=@p5,"domain"=@p6,"gateway"=@p7,"gateway6"=@p8,"hostname"=@p9,"inv_arch"=@p10,"inv_asset"=@p11,"inv_mac"=@p12,"inv_platform"=@p13,"inv_seen_at"=@p14,"inv_serial"=@p15,"inv_uuid"=@p16,"ipv4"=@p17,"ipv6"=@p18,"labels"=@p19,"last_callback"=@p20,"last_error"=@p21,"macs"=@p22,"profile"=@p23,"state"=@p24,"token_hash"=@p25,"updated_at"=@p26,"version"=@p27,"vlan"=@p28 WHERE name = @p29 AND version = @p30;
-- error: store: update host node01: version 0: conflict;
