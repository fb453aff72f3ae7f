-- read_many: the meta and state of several sessions, for one page of a listing, in one call.
-- A single Redis only: the keys span hash slots, which a Redis Cluster refuses in one script
-- (there the store reads session by session).
-- KEYS: meta, state, ext of each session (see keys.py), in page order
-- ARGV[1]: the most state elements the page may hold (0: no budget)
-- ARGV[2..]: the meta fields to return (redis.py META_FIELDS)
-- Returns: one entry per session read, {meta's ARGV[2..] fields as HMGET, sums, extremes}, or
-- {} for a session that is gone (TTL); it stops before the session that would take the page
-- past the budget, but always reads the first. HMGET, not HGETALL: half the reply to parse.
local budget = tonumber(ARGV[1])
local fields = {unpack(ARGV, 2)}
local out, total = {}, 0
for i = 1, #KEYS, 3 do
  local sums = redis.call('GET', KEYS[i + 1]) or ''
  local extremes = redis.call('GET', KEYS[i + 2]) or ''
  total = total + math.floor(#sums / 8) + math.floor(#extremes / 9)
  if budget > 0 and i > 1 and total > budget then
    break
  end
  local meta = redis.call('HMGET', KEYS[i], unpack(fields))
  if not meta[1] then  -- every session has its first field (metric)
    out[#out + 1] = {}
  else
    out[#out + 1] = {meta, sums, extremes}
  end
end
return out
