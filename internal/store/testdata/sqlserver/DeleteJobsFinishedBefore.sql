SELECT "id" FROM "jobs" WHERE finished_at < @p1;
DELETE FROM "job_hosts" WHERE job_id IN (SELECT "id" FROM "jobs" WHERE finished_at < @p1);
DELETE FROM "jobs" WHERE finished_at < @p1;
