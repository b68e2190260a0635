DROP TABLE rest_live_jobs;
