//! The store's statements, with the configured schema spliced in once at start (it was
//! validated as a plain identifier; values always go as parameters). Kept in one place so the
//! semantics in `mod.rs` read apart from the SQL that carries them.

/// Every statement the store runs, qualified with its schema.
pub struct Sql {
    pub read: String,
    pub lock: String,
    pub insert: String,
    pub update: String,
    /// Counts a new row in its shard, if the table's total is under the bound.
    pub room: String,
    /// `decide_complete`: only the owner's claim becomes a completed record; its fingerprint
    /// stays.
    pub complete: String,
    /// `owns`: only the owner's claim is removed, and uncounted.
    pub release: String,
    /// Whether this replica may prune now (a transaction-scoped advisory lock).
    pub prune_lock: String,
    /// Deletes up to `$2` rows expired at `$1`, skipping rows a request holds, uncounts them,
    /// and returns how many.
    pub prune: String,
    pub count: String,
}

const COLUMNS: &str = "kind, fingerprint, owner, until_ms, response, bound_key";

impl Sql {
    pub fn new(s: &str) -> Sql {
        let read = format!("SELECT {COLUMNS} FROM {s}.records WHERE key = $1");
        Sql {
            lock: format!("{read} FOR UPDATE"),
            read,
            insert: format!(
                "INSERT INTO {s}.records (key, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (key) DO NOTHING"
            ),
            update: format!(
                "UPDATE {s}.records SET kind = $2, fingerprint = $3, owner = $4, until_ms = $5, \
                 response = $6, bound_key = $7 WHERE key = $1"
            ),
            room: format!(
                "UPDATE {s}.counts SET n = n + 1 WHERE name = 'records' AND shard = $1 \
                 AND (SELECT sum(n) FROM {s}.counts WHERE name = 'records')::bigint < $2"
            ),
            complete: format!(
                "UPDATE {s}.records SET kind = 'c', owner = NULL, response = $3, until_ms = $4 \
                 WHERE key = $1 AND kind = 'i' AND owner = $2"
            ),
            release: format!(
                "WITH gone AS (DELETE FROM {s}.records WHERE key = $1 AND kind = 'i' \
                 AND owner = $2 RETURNING 1) \
                 UPDATE {s}.counts SET n = n - 1 WHERE name = 'records' AND shard = $3 \
                 AND EXISTS (SELECT 1 FROM gone)"
            ),
            prune_lock: format!("SELECT pg_try_advisory_xact_lock(hashtext('payguard-prune:{s}'))"),
            prune: format!(
                "WITH gone AS (DELETE FROM {s}.records WHERE key IN (SELECT key FROM {s}.records \
                 WHERE until_ms <= $1 ORDER BY until_ms LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 RETURNING get_byte(key, 0) % 16 AS shard), \
                 per AS (SELECT shard, count(*) AS c FROM gone GROUP BY shard), \
                 fix AS (UPDATE {s}.counts t SET n = t.n - per.c FROM per \
                 WHERE t.name = 'records' AND t.shard = per.shard) \
                 SELECT coalesce(sum(c), 0)::bigint FROM per"
            ),
            count: format!(
                "SELECT coalesce(sum(n), 0)::bigint FROM {s}.counts WHERE name = 'records'"
            ),
        }
    }
}
