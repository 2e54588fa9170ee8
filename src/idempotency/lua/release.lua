-- owns (store.rs): only the owner's own claim is given up.
-- KEYS[1] the record, KEYS[2] the index. ARGV: owner.
local r = redis.call('HMGET', KEYS[1], 'k', 'o')
if r[1] == 'i' and r[2] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], KEYS[1])
  return 1
end
return 0
