-- What several chatd nodes on one database share besides the data itself
-- (issue 23): rate limits that protect accounts, and leases on webhook
-- deliveries. (Version 2 is the write-locking change's.)

-- One GCRA bucket per limited key ("login:...", "auth:...", "send:..."),
-- taken with one upsert by whichever node the request reached, so a limit
-- holds for the whole cluster instead of once per node. `tat` is the
-- theoretical arrival time in ms (database clock): a key whose `tat` has
-- passed has its whole burst again, which is also why such rows may be
-- deleted at any time. `allowed` is the last take's verdict, returned by
-- the same statement (an upsert's RETURNING sees only the new row).
CREATE TABLE rate_buckets (
    key     text             PRIMARY KEY,
    tat     double precision NOT NULL,
    allowed boolean          NOT NULL
);
CREATE INDEX rate_buckets_tat ON rate_buckets (tat);

-- A delivery being attempted is leased to one node until `lease_until`
-- (ms, the nodes' clocks): other nodes skip it, and take it over once the
-- lease has passed (its node died or hung).
ALTER TABLE webhook_deliveries
    ADD COLUMN lease_owner text,
    ADD COLUMN lease_until bigint;
