-- The hash each audit record is chained with: `sha256` (every record before this migration)
-- or `sm3` (GB/T 32905, `security.audit_hash`). A record's own algorithm is kept beside it, so a
-- chain that changes algorithm keeps verifying. Adding a column fires no UPDATE trigger.
ALTER TABLE audit_log ADD COLUMN alg TEXT NOT NULL DEFAULT 'sha256';
