-- Tasks gain a priority (0-9, checked by the app) and an optional note.
ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN note TEXT;
