SELECT "name" FROM "hosts" WHERE name = @p1 ORDER BY "name" OFFSET 0 ROW FETCH NEXT 1 ROWS ONLY;
SELECT * FROM "host_macs" WHERE mac IN (@p1) AND host_name <> @p2 ORDER BY mac;
SELECT "name" FROM "hosts" WHERE ipv4 >= @p1 AND ipv4 < @p2 AND name <> @p3 ORDER BY name OFFSET 0 ROW FETCH NEXT 1 ROWS ONLY;
SELECT "name" FROM "hosts" WHERE ipv6 >= @p1 AND ipv6 < @p2 AND name <> @p3 ORDER BY name OFFSET 0 ROW FETCH NEXT 1 ROWS ONLY;
INSERT INTO "hosts" ("name","macs","ipv4","gateway","dns","ipv6","gateway6","vlan","hostname","domain","profile","clean_then_install","state","attempt","deadline","version","inv_mac","inv_uuid","inv_serial","inv_asset","inv_arch","inv_platform","inv_seen_at","token_hash","callback_hash","last_callback","last_error","labels","created_at","updated_at") VALUES (@p1,@p2,@p3,@p4,@p5,@p6,@p7,@p8,@p9,@p10,@p11,@p12,@p13,@p14,@p15,@p16,@p17,@p18,@p19,@p20,@p21,@p22,@p23,@p24,@p25,@p26,@p27,@p28,@p29,@p30);
INSERT INTO "host_macs" ("mac","host_name","position") VALUES (@p1,@p2,@p3);
INSERT INTO "host_labels" ("host_name","label_key","label_value") VALUES (@p1,@p2,@p3);
INSERT INTO "events" ("host_name","actor","event","action","from_state","to_state","attempt","fields","reason","request_id","client_addr","subject","time") OUTPUT INSERTED."id" VALUES (@p1,@p2,@p3,@p4,@p5,@p6,@p7,@p8,@p9,@p10,@p11,@p12,@p13);
