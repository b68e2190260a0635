DROP TABLE rest_live_changes;
DROP TABLE rest_live_streams;
