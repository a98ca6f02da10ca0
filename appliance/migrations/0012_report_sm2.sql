-- SM2 report signatures and the seal's hash. `seal_alg` is the hash of `seal_sha256` (`sha256`
-- for every report sealed before this migration, else `security.audit_hash`); a signed report
-- also keeps the statement its SM2 signature covers, the signature (DER, base64) and the
-- certificate chain it was made under, so it verifies after the key is replaced. Adding
-- columns fires no UPDATE trigger, so signed reports stay final.
ALTER TABLE reports ADD COLUMN seal_alg TEXT NOT NULL DEFAULT 'sha256';
ALTER TABLE reports ADD COLUMN sm2_statement TEXT;
ALTER TABLE reports ADD COLUMN sm2_signature TEXT;
ALTER TABLE reports ADD COLUMN sm2_certificate TEXT;
