SELECT * FROM "jobs" WHERE id = @p1 ORDER BY "id" OFFSET 0 ROW FETCH NEXT 1 ROWS ONLY;
SELECT * FROM "job_hosts" WHERE job_id IN (@p1) ORDER BY job_id,seq;
