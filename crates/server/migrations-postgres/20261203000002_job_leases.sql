-- Jobs leased across server instances: how many times a job was taken over after its
-- instance's lease expired (a job that keeps failing there is failed, not retried forever),
-- and the index the instances' scans for claimable jobs read.
ALTER TABLE server_jobs ADD COLUMN takeovers BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS server_jobs_lease ON server_jobs (status, lease_until);
