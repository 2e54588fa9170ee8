-- decide_claim (store.rs), atomically. A record is a hash: k = kind ('i' in flight,
-- 'c' completed, 'b' binding), fp = fingerprint, o = owner, t = lease or expiry (Unix ms),
-- r = the stored response, b = the bound key.
-- KEYS[1] the record, KEYS[2] the index (a sorted set of records by t, for prune and count).
-- ARGV: now, fingerprint, owner, lease_until, max_records, ttl_ms.
local now = tonumber(ARGV[1])
local r = redis.call('HMGET', KEYS[1], 'k', 'fp', 't', 'r')
local kind, until_ms = r[1], tonumber(r[3])
-- A live claim or a live completed record answers.
if kind == 'i' and until_ms > now then
  return {'inflight', r[2]}
end
if kind == 'c' and until_ms > now then
  return {'completed', r[2], r[4]}
end
-- Absent or expired: the caller claims it. A new key must fit under the bound; expired
-- records leave only in the periodic prune, never on the request path.
if not kind then
  local held = redis.call('ZCARD', KEYS[2])
  if held >= tonumber(ARGV[5]) then
    return {'full', tostring(held)}
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'k', 'i', 'fp', ARGV[2], 'o', ARGV[3], 't', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[4], KEYS[1])
-- The index outlives every record it lists, and no longer: nothing stays behind for good.
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[6]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return {'claimed'}
