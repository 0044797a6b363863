INSERT INTO "jobs" ("id","action","via","actor","replica","created_at","heartbeat_at","finished_at") VALUES (@p1,@p2,@p3,@p4,@p5,@p6,@p7,@p8);
INSERT INTO "job_hosts" ("job_id","seq","host_name","bmc","status","error_text","unknown_host","started_at","finished_at") VALUES (@p1,@p2,@p3,@p4,@p5,@p6,@p7,@p8,@p9);
