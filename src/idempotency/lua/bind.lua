-- decide_bind (store.rs), atomically: a live binding stands unless it names the key to
-- replace; otherwise the candidate is bound.
-- KEYS[1] the binding, KEYS[2] the index.
-- ARGV: candidate, expires_at, now, max_records, ttl_ms, replace ('' for none).
local r = redis.call('HMGET', KEYS[1], 'k', 'b', 't')
if r[1] == 'b' and tonumber(r[3]) > tonumber(ARGV[3]) and (ARGV[6] == '' or r[2] ~= ARGV[6]) then
  return {'bound', r[2]}
end
if not r[1] then
  local held = redis.call('ZCARD', KEYS[2])
  if held >= tonumber(ARGV[4]) then
    return {'full', tostring(held)}
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'k', 'b', 'b', ARGV[1], 't', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[2], KEYS[1])
-- The index outlives every record it lists, and no longer: nothing stays behind for good.
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return {'bound', ARGV[1]}
