-- AUTOINCREMENT: a deleted list's or task's id is never handed out again, so a subscription by pk
-- can never start following a different object.
CREATE TABLE lists (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL
);

CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    text TEXT NOT NULL,
    done BOOLEAN NOT NULL DEFAULT 0,
    list_id INTEGER NOT NULL REFERENCES lists (id)
);

CREATE INDEX tasks_list_id ON tasks (list_id);
