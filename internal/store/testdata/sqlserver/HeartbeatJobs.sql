UPDATE "jobs" SET "heartbeat_at"=@p1 WHERE replica = @p2 AND finished_at IS NULL;
