SELECT * FROM "jobs" WHERE finished_at IS NULL OR finished_at >= @p1 ORDER BY created_at,id;
