-- decide_complete (store.rs), atomically: only the owner's claim becomes a completed record,
-- so a holder whose lease ran out and was taken over cannot overwrite the newer result.
-- KEYS[1] the record, KEYS[2] the index. ARGV: owner, response, expires_at, ttl_ms.
local r = redis.call('HMGET', KEYS[1], 'k', 'o')
if r[1] ~= 'i' or r[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'k', 'c', 't', ARGV[3], 'r', ARGV[2])
redis.call('HDEL', KEYS[1], 'o')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
-- The index outlives every record it lists, and no longer: nothing stays behind for good.
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[4]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return 1
