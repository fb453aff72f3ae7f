-- read_many: the meta and state of several sessions, for one page of a listing, in one call.
-- A single Redis only: the keys span hash slots, which a Redis Cluster refuses in one script
-- (there the store reads session by session).
-- KEYS: meta, state, ext of each session (see keys.py), in page order
-- ARGV[1]: the most state elements the page may hold (0: no budget)
-- ARGV[2]: n, the number of meta fields to return; ARGV[3 .. 2 + n]: those fields (redis.py
--          META_FIELDS)
-- ARGV[3 + n + k - 1]: for the k-th session, "<id>:<v>" of the state the caller already has
--          (its result cached), or '' for none
-- Returns: one entry per session read: 1 when its meta's id and state version `v` (absent:
-- 0; every write bumps it, see apply.lua) are the caller's "<id>:<v>", so the state is not
-- sent; else {the n meta fields as HMGET, sums, extremes}; or {} for a session that is gone
-- (TTL). It stops before the session that would take the page past the budget, but always
-- reads the first. HMGET, not HGETALL: half the reply to parse.
local budget = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local fields = {unpack(ARGV, 3, 2 + n)}
local out, total = {}, 0
for i = 1, #KEYS, 3 do
  local token = ARGV[3 + n + (i - 1) / 3] or ''
  local same = false
  if token ~= '' then
    local seen = redis.call('HMGET', KEYS[i], 'id', 'v')
    same = seen[1] and (seen[1] .. ':' .. (seen[2] or '0')) == token
  end
  local sums, extremes
  if same then
    total = total + math.floor(redis.call('STRLEN', KEYS[i + 1]) / 8)
      + math.floor(redis.call('STRLEN', KEYS[i + 2]) / 9)
  else
    sums = redis.call('GET', KEYS[i + 1]) or ''
    extremes = redis.call('GET', KEYS[i + 2]) or ''
    total = total + math.floor(#sums / 8) + math.floor(#extremes / 9)
  end
  if budget > 0 and i > 1 and total > budget then
    break
  end
  if same then
    out[#out + 1] = 1
  else
    local meta = redis.call('HMGET', KEYS[i], unpack(fields))
    if not meta[1] then  -- every session has its first field (metric)
      out[#out + 1] = {}
    else
      out[#out + 1] = {meta, sums, extremes}
    end
  end
end
return out
