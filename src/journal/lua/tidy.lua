-- Drops index members whose entry is gone (deleted or evicted behind payguard's back), so
-- they stop counting against max_entries. A member whose entry exists again is kept. The
-- entries' names are built here, not passed in KEYS: fine on one server, one reason Redis
-- Cluster is not supported.
-- KEYS[1] the index. ARGV[1] the entries' key prefix, then the members to check.
local dropped = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 0 then
    dropped = dropped + redis.call('SREM', KEYS[1], ARGV[i])
  end
end
return dropped
