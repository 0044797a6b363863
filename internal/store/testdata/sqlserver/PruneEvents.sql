DELETE FROM "events" WHERE time < @p1;
