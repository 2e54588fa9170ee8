-- GCRA as a reservation, the same arithmetic as Limiter::reserve (mod.rs), on Redis's clock
-- so that replicas' clocks do not matter. Every replica reserves from the one theoretical
-- arrival time (TAT) stored under KEYS[1], so together they stay under the rate.
-- ARGV: interval_us (1 / the caller's rate), tolerance_us ((burst - 1) * interval),
-- wait_limit_us (the longest the caller may wait).
-- Returns {1, wait_us} for a reserved send time wait_us from now, {0, wait_us} for a refusal.
if redis.replicate_commands then
  redis.replicate_commands() -- needed before Redis 5 to write after TIME; a no-op since
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local at = tat - tolerance
if at < now then
  at = now
end
local wait = at - now
if wait > limit then
  return {0, wait}
end
local next_tat = tat + interval
-- '%.0f': Lua would print a number this large in exponent form and lose digits.
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX',
  math.ceil((next_tat - now) / 1000) + 1000)
return {1, wait}
