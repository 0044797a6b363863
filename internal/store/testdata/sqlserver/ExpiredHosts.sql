SELECT * FROM "hosts" WHERE state IN (@p1,@p2) AND deadline IS NOT NULL AND deadline < @p3 ORDER BY name;
