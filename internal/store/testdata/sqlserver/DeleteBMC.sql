DELETE FROM "bmcs" WHERE host_name = @p1;
-- error: store: delete BMC of node01: not found;
