SELECT "id" FROM "jobs" WHERE finished_at IS NULL AND heartbeat_at < @p6 AND replica <> @p7;
UPDATE "job_hosts" SET "error_text"=@p1,"finished_at"=@p2,"status"=@p3 WHERE status IN (@p4,@p5) AND job_id IN (SELECT "id" FROM "jobs" WHERE finished_at IS NULL AND heartbeat_at < @p6 AND replica <> @p7);
UPDATE "jobs" SET "finished_at"=@p1 WHERE (heartbeat_at < @p2 AND replica <> @p3) AND finished_at IS NULL AND (NOT EXISTS (SELECT 1 FROM job_hosts WHERE job_hosts.job_id = jobs.id AND job_hosts.status IN (@p4,@p5)));
