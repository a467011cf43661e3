-- Content trust of service builds: whether the submitter asked to skip
-- verification, and what verification recorded (JSON: `disabled` and the
-- `verified` signatures), kept for provenance.
ALTER TABLE builds ADD COLUMN disable_content_trust BIGINT NOT NULL DEFAULT 0;
ALTER TABLE builds ADD COLUMN content_trust TEXT;
