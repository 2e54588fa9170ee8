-- The resolver's lease on an entry: granted when nobody holds it, or when the caller already
-- does (then renewed); refused while another holder's lease runs.
-- KEYS[1] the lease. ARGV: holder, milliseconds.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
