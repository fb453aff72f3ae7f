-- read_many: the meta and state of several sessions, for one page of a listing, in one call.
-- A single Redis only: the keys span hash slots, which a Redis Cluster refuses in one script
-- (there the store reads session by session).
-- KEYS: meta, state, ext of each session (see keys.py), in page order
-- ARGV[1]: the most state elements the page may hold (0: no budget)
-- Returns: one entry per session read, {meta as flat HGETALL, sums, extremes}, or {} for a
-- session that is gone (TTL); it stops before the session that would take the page past the
-- budget, but always reads the first.
local budget = tonumber(ARGV[1])
local out, total = {}, 0
for i = 1, #KEYS, 3 do
  local sums = redis.call('GET', KEYS[i + 1]) or ''
  local extremes = redis.call('GET', KEYS[i + 2]) or ''
  total = total + math.floor(#sums / 8) + math.floor(#extremes / 9)
  if budget > 0 and i > 1 and total > budget then
    break
  end
  local meta = redis.call('HGETALL', KEYS[i])
  if #meta == 0 then
    out[#out + 1] = {}
  else
    out[#out + 1] = {meta, sums, extremes}
  end
end
return out
