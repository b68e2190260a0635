-- AUTOINCREMENT: a deleted list's or task's id is never handed out again, so a subscription by pk
-- can never start following a different object.
CREATE TABLE lists (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL,
    -- The user who owns the list (NULL: created anonymously, shared by all anonymous clients).
    owner TEXT
);

CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    text TEXT NOT NULL,
    done BOOLEAN NOT NULL DEFAULT 0,
    list_id INTEGER NOT NULL REFERENCES lists (id),
    -- The owner of the task's list, kept here so that reads can be scoped by owner.
    owner TEXT
);

CREATE INDEX tasks_list_id ON tasks (list_id);

CREATE INDEX lists_owner ON lists (owner);
CREATE INDEX tasks_owner ON tasks (owner);
