-- Signed releases: a succeeded build published to an OCI registry with the
-- team's key. `reference` is REGISTRY/REPO:TAG; kiln never moves a
-- published tag, so it is unique. `verification` is the outcome of the
-- last check (at publication, or `GET /releases/{id}/verify`), `checks`
-- its JSON list.
CREATE TABLE releases (
    id              TEXT PRIMARY KEY,
    team            TEXT NOT NULL REFERENCES teams(name) ON DELETE CASCADE,
    build_id        TEXT NOT NULL REFERENCES builds(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    reference       TEXT NOT NULL UNIQUE,
    repository      TEXT NOT NULL,
    tag             TEXT NOT NULL,
    digest          TEXT NOT NULL,
    size            INTEGER NOT NULL,
    key_fingerprint TEXT NOT NULL,
    referrers       TEXT NOT NULL,
    published_by    TEXT NOT NULL,
    published_at    INTEGER NOT NULL,
    verification    TEXT NOT NULL CHECK (verification IN ('verified', 'failed', 'unverified')),
    verified_at     INTEGER,
    checks          TEXT
);
CREATE INDEX releases_by_team ON releases (team, published_at);

-- What a build's images resolved to (JSON: the name as written in the spec
-- -> expanded reference and root digest), so that its provenance and SBOM
-- can be made when it is published.
ALTER TABLE builds ADD COLUMN images TEXT;
