CREATE TABLE lists (
    id SERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT
);

CREATE TABLE tasks (
    id SERIAL PRIMARY KEY,
    text TEXT NOT NULL,
    done BOOLEAN NOT NULL DEFAULT FALSE,
    list_id INTEGER NOT NULL REFERENCES lists (id),
    owner TEXT
);

CREATE INDEX tasks_list_id ON tasks (list_id);
