//! Between a [`Record`] and a row of the `records` table (`migrations/0001_init.sql`): one
//! column per field, so an operator can read the table with `psql`, rather than one opaque
//! blob. Only the stored response is encoded (postcard, as in every store).

use tokio_postgres::Row;

use super::pool::PgFailure;
use crate::idempotency::fingerprint::Digest;
use crate::idempotency::store::{Record, StoredResponse};

const IN_FLIGHT: i8 = b'i' as i8;
const COMPLETED: i8 = b'c' as i8;
const BINDING: i8 = b'b' as i8;

/// A record's columns after `key`, in the order of the insert and update statements.
pub struct Values {
    pub kind: i8,
    pub fingerprint: Option<Vec<u8>>,
    pub owner: Option<Vec<u8>>,
    pub until_ms: i64,
    pub response: Option<Vec<u8>>,
    pub bound_key: Option<String>,
}

/// A Unix-millisecond time as the `bigint` column holds it.
pub fn millis(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

pub fn owner_bytes(owner: u128) -> [u8; 16] {
    owner.to_be_bytes()
}

fn corrupt(what: &str) -> PgFailure {
    PgFailure::Db(format!("a record in PostgreSQL has {what}"))
}

fn digest(bytes: Option<Vec<u8>>) -> Result<Digest, PgFailure> {
    bytes
        .and_then(|b| Digest::try_from(b.as_slice()).ok())
        .ok_or_else(|| corrupt("no valid fingerprint"))
}

/// The record in a row of `kind, fingerprint, owner, until_ms, response, bound_key`.
pub fn record(row: &Row) -> Result<Record, PgFailure> {
    let kind: i8 = row.try_get(0)?;
    let fingerprint: Option<Vec<u8>> = row.try_get(1)?;
    let owner: Option<Vec<u8>> = row.try_get(2)?;
    let until = u64::try_from(row.try_get::<_, i64>(3)?).unwrap_or(0);
    match kind {
        IN_FLIGHT => {
            let owner = owner
                .and_then(|o| <[u8; 16]>::try_from(o.as_slice()).ok())
                .ok_or_else(|| corrupt("a claim without a valid owner"))?;
            Ok(Record::InFlight {
                fingerprint: digest(fingerprint)?,
                owner: u128::from_be_bytes(owner),
                lease_until: until,
            })
        }
        COMPLETED => {
            let response: Option<Vec<u8>> = row.try_get(4)?;
            let response = response.ok_or_else(|| corrupt("a completed key without response"))?;
            Ok(Record::Completed {
                fingerprint: digest(fingerprint)?,
                response: StoredResponse::decode(&response)
                    .map_err(|e| PgFailure::Db(e.to_string()))?,
                expires_at: until,
            })
        }
        BINDING => Ok(Record::Binding {
            key: row
                .try_get::<_, Option<String>>(5)?
                .ok_or_else(|| corrupt("a binding without a key"))?,
            expires_at: until,
        }),
        other => Err(corrupt(&format!("an unknown kind {other}"))),
    }
}

/// The columns of `record`.
pub fn values(record: &Record) -> Result<Values, PgFailure> {
    Ok(match record {
        Record::InFlight {
            fingerprint,
            owner,
            lease_until,
        } => Values {
            kind: IN_FLIGHT,
            fingerprint: Some(fingerprint.to_vec()),
            owner: Some(owner_bytes(*owner).to_vec()),
            until_ms: millis(*lease_until),
            response: None,
            bound_key: None,
        },
        Record::Completed {
            fingerprint,
            response,
            expires_at,
        } => Values {
            kind: COMPLETED,
            fingerprint: Some(fingerprint.to_vec()),
            owner: None,
            until_ms: millis(*expires_at),
            response: Some(
                response
                    .encode()
                    .map_err(|e| PgFailure::Db(e.to_string()))?,
            ),
            bound_key: None,
        },
        Record::Binding { key, expires_at } => Values {
            kind: BINDING,
            fingerprint: None,
            owner: None,
            until_ms: millis(*expires_at),
            response: None,
            bound_key: Some(key.clone()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::postgres::pool::shard;

    #[test]
    fn shards_match_the_sql_and_times_saturate() {
        assert_eq!(shard(&[0x1f; 32]), 15);
        assert_eq!(shard(&[0x20; 32]), 0);
        assert_eq!(millis(u64::MAX), i64::MAX);
        assert_eq!(u128::from_be_bytes(owner_bytes(7 << 100)), 7 << 100);
    }
}
