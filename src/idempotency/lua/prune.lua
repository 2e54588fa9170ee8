-- Removes up to ARGV[2] records whose lease or expiry is at or before ARGV[1] (now). The
-- index's score is rewritten with every record, so it is the record's current expiry.
-- The records' names come from the index, not KEYS: fine on one server, one reason Redis
-- Cluster is not supported.
-- KEYS[1] the index.
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, key in ipairs(expired) do
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], key)
end
return #expired
