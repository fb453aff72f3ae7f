-- read_many: the meta and state of several sessions, for one page of a listing, in one call.
-- A single Redis only: the keys span hash slots, which a Redis Cluster refuses in one script
-- (there the store reads session by session). The script composes each session's keys from
-- its name, and the names come in one argument, so that a page of a thousand sessions is a
-- few arguments, not three thousand keys (redis-py packs each argument in Python: that was a
-- third of a listing's time).
-- KEYS: the first session's meta key (where the call goes)
-- ARGV[1]: the most state elements the page may hold (0: no budget)
-- ARGV[2]: n, the number of meta fields to return; ARGV[3 .. 2 + n]: those fields (redis.py
--          META_FIELDS)
-- ARGV[3 + n .. 8 + n]: the text before and after the name in a session's meta, state and
--          ext keys (keys.around_name)
-- ARGV[9 + n]: per session, its name and a newline, then "<id>:<v>" of the state the caller
--          already has (its result cached) or nothing, and a newline (names and ids hold no
--          newline: service.NAME_PATTERN, hex ids)
-- Returns: one entry per session read: 1 when its meta's id and state version `v` (absent:
-- 0; every write bumps it, see apply.lua) are the caller's "<id>:<v>", so the state is not
-- sent; {epoch, v, layout or '', sums, extremes} when only the version moved (the same
-- incarnation, id: its other meta fields are fixed at create, and the caller has them);
-- else {the n meta fields as HMGET, sums, extremes}; or {} for a session that is gone
-- (TTL). It stops before the session that would take the page past the budget, but always
-- reads the first. HMGET, not HGETALL: half the reply to parse.
local budget = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local fields = {unpack(ARGV, 3, 2 + n)}
local affix = {unpack(ARGV, 3 + n, 8 + n)}
local out, total = {}, 0
for name, token in string.gmatch(ARGV[9 + n], '([^\n]*)\n([^\n]*)\n') do
  local meta = affix[1] .. name .. affix[2]
  local state, ext = affix[3] .. name .. affix[4], affix[5] .. name .. affix[6]
  local same, moved, seen = false, false, nil
  if token ~= '' then
    seen = redis.call('HMGET', meta, 'id', 'v', 'epoch', 'layout')
    if seen[1] then
      same = (seen[1] .. ':' .. (seen[2] or '0')) == token
      moved = not same and seen[1] == string.match(token, '^(.*):')
    end
  end
  local sums, extremes
  if same then
    total = total + math.floor(redis.call('STRLEN', state) / 8)
      + math.floor(redis.call('STRLEN', ext) / 9)
  else
    sums = redis.call('GET', state) or ''
    extremes = redis.call('GET', ext) or ''
    total = total + math.floor(#sums / 8) + math.floor(#extremes / 9)
  end
  if budget > 0 and #out > 0 and total > budget then
    break
  end
  if same then
    out[#out + 1] = 1
  elseif moved then
    out[#out + 1] = {seen[3], seen[2] or '0', seen[4] or '', sums, extremes}
  else
    local found = redis.call('HMGET', meta, unpack(fields))
    if not found[1] then  -- every session has its first field (metric)
      out[#out + 1] = {}
    else
      out[#out + 1] = {found, sums, extremes}
    end
  end
end
return out
