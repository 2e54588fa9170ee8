-- Gives a lease back, only if the caller still holds it (it may have run out and been taken).
-- KEYS[1] the lease. ARGV: holder.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
