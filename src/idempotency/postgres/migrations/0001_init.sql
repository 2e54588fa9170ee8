-- payguard schema version 1: the idempotency records, their counts, the resolver's journal
-- and its leases. Run by payguard at start (src/idempotency/postgres/migrate.rs) with
-- search_path set to the configured schema, inside one transaction under an advisory lock.

-- One row per idempotency key (in flight or completed) or keyless binding. `key` is the
-- SHA-256 payguard computes from the tenant and the key (or the request's identity).
CREATE TABLE records (
    key         bytea PRIMARY KEY,
    -- 'i' in flight, 'c' completed, 'b' binding
    kind        "char" NOT NULL CHECK (kind IN ('i', 'c', 'b')),
    -- in flight and completed: the digest of the request the key was first used for
    fingerprint bytea,
    -- in flight: the claim's owner (16 random bytes per request); only it may complete or
    -- release the claim
    owner       bytea,
    -- in flight: the end of the claim's lease (locked until); completed and binding: expiry.
    -- Unix milliseconds from payguard's clock, as in every store.
    until_ms    bigint NOT NULL,
    -- completed: the stored response (status, headers, body; postcard-encoded)
    response    bytea,
    -- binding: the idempotency key the request's identity is bound to
    bound_key   text
);
-- The prune deletes by expiry, in batches.
CREATE INDEX records_until_ms ON records (until_ms);

-- Rows held per table, in 16 shards (by the key's first byte) so that concurrent inserts do
-- not all queue on one counter row: the bound (`max_records`, `max_entries`) is checked
-- against their sum without scanning the table.
CREATE TABLE counts (
    name  text NOT NULL,
    shard smallint NOT NULL,
    n     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (name, shard)
);
INSERT INTO counts (name, shard)
SELECT name, shard FROM unnest(ARRAY['records', 'journal']) AS name,
    generate_series(0, 15) AS shard;

-- The resolver's journal: one row per keyed POST payguard sent and has not yet settled, or
-- has settled recently. `entry` is the entry as the other backends keep it (postcard), its
-- payload sealed with AES-256-GCM when resolver.encryption_key_file is set.
CREATE TABLE journal (
    id         bytea PRIMARY KEY,
    entry      bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The resolver's lease on an entry: one replica at a time acts on it. Times are the
-- database's clock, the one clock every replica shares.
CREATE TABLE journal_leases (
    id          bytea PRIMARY KEY,
    holder      text NOT NULL,
    lease_until timestamptz NOT NULL
);
