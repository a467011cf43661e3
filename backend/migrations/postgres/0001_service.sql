-- kiln serve on PostgreSQL (the same schema as migrations/sqlite): accounts, teams, tokens, sessions, builds and their events,
-- artifacts, trust policies and the append-only audit log.
-- Times are Unix seconds (UTC).

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    server_admin  BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE teams (
    name       TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE members (
    team    TEXT NOT NULL REFERENCES teams(name) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role    TEXT NOT NULL CHECK (role IN ('viewer', 'builder', 'publisher', 'admin')),
    PRIMARY KEY (team, user_id)
);

-- API tokens: only the SHA-256 of the secret is kept.
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    team       TEXT NOT NULL REFERENCES teams(name) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('viewer', 'builder', 'publisher', 'admin')),
    hash       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Browser sessions: the SHA-256 of the cookie value, and the CSRF token.
CREATE TABLE sessions (
    hash       TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- The job queue is this table: workers claim `queued` rows.
CREATE TABLE builds (
    id               TEXT PRIMARY KEY,
    team             TEXT NOT NULL REFERENCES teams(name) ON DELETE CASCADE,
    created_by       TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    spec             TEXT NOT NULL,
    spec_digest      TEXT NOT NULL,
    formats          TEXT NOT NULL,
    name             TEXT NOT NULL,
    arch             TEXT NOT NULL,
    pull             BIGINT NOT NULL DEFAULT 0,
    attempts         BIGINT NOT NULL DEFAULT 0,
    error            TEXT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    worker           TEXT,
    heartbeat_at     BIGINT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT
);
CREATE INDEX builds_by_state ON builds (state, created_at);
CREATE INDEX builds_by_team ON builds (team, created_at);

CREATE TABLE build_events (
    build_id TEXT NOT NULL REFERENCES builds(id) ON DELETE CASCADE,
    seq      BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    data     TEXT NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (build_id, seq)
);

-- Artifact bytes live on disk under artifacts/sha256/<hex>.
CREATE TABLE artifacts (
    build_id   TEXT NOT NULL REFERENCES builds(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    size       BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    media_type TEXT NOT NULL,
    PRIMARY KEY (build_id, name)
);

CREATE TABLE policies (
    team       TEXT PRIMARY KEY REFERENCES teams(name) ON DELETE CASCADE,
    policy     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     BIGINT NOT NULL,
    actor  TEXT,
    team   TEXT,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
);
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
