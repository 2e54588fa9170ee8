-- Compare-and-set of one journal entry: the write happens only if the entry is still what the
-- caller read (ARGV[2] = '1': the bytes in ARGV[3]; '0': absent), else 'conflict' and the
-- caller runs its change again on a fresh read. The change itself is Rust; this only commits
-- it, atomically with the index, as WATCH/MULTI/EXEC would on a connection of its own.
-- KEYS[1] the entry, KEYS[2] the index (a set of hex ids).
-- ARGV: the id's hex, expected-present flag, expected bytes, 'put' or 'delete', the new
-- bytes, max_entries.
local current = redis.call('GET', KEYS[1])
if ARGV[2] == '1' then
  if current ~= ARGV[3] then return 'conflict' end
elseif current then
  return 'conflict'
end
if ARGV[4] == 'delete' then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  return 'done'
end
if not current and redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[6]) then
  return 'full'
end
redis.call('SET', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[1])
return 'done'
