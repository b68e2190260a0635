CREATE TABLE lists (
    id SERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    -- The user who owns the list (NULL: created anonymously, shared by all anonymous clients).
    owner TEXT
);

CREATE TABLE tasks (
    id SERIAL PRIMARY KEY,
    text TEXT NOT NULL,
    done BOOLEAN NOT NULL DEFAULT FALSE,
    list_id INTEGER NOT NULL REFERENCES lists (id),
    -- The owner of the task's list, kept here so that reads can be scoped by owner.
    owner TEXT
);

CREATE INDEX tasks_list_id ON tasks (list_id);

CREATE INDEX lists_owner ON lists (owner);
CREATE INDEX tasks_owner ON tasks (owner);
