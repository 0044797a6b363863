SELECT count(*) FROM "api_tokens" WHERE owner = @p1 AND name = @p2;
INSERT INTO "api_tokens" ("name","kind","owner","grants","expires_at","last_used_at","revoked_at","created_by","created_at","hash") OUTPUT INSERTED."id" VALUES (@p1,@p2,@p3,@p4,@p5,@p6,@p7,@p8,@p9,@p10);
INSERT INTO "events" ("host_name","actor","event","action","from_state","to_state","attempt","fields","reason","request_id","client_addr","subject","time") OUTPUT INSERTED."id" VALUES (@p1,@p2,@p3,@p4,@p5,@p6,@p7,@p8,@p9,@p10,@p11,@p12,@p13);
