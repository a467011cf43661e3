-- Identical builds on different worker processes: the first to insert the
-- key writes; the others wait for its build to succeed and take its
-- artifacts. A row lives while its build runs (removed when the build
-- ends, or by the recovery of a dead worker).
CREATE TABLE flights (
    key        TEXT PRIMARY KEY,
    build_id   TEXT NOT NULL REFERENCES builds(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);
CREATE INDEX flights_by_build ON flights (build_id);
