DROP TABLE tasks;
DROP TABLE lists;
