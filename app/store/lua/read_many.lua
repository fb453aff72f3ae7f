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
-- ARGV[3 + n .. 10 + n]: the text before and after the name in a session's meta, state, ext
--          and ver keys (keys.around_name)
-- ARGV[11 + n]: per session, its name and a newline, then "<id>:<v>:<elements>" of the state
--          the caller already has (its result cached; elements: that state's sums plus
--          extremes) or nothing, and a newline (a name holds no newline, service.NAME_PATTERN;
--          an id is hex, so the token's colons are its only ones)
-- Returns: one entry per session read: 1 when its id and state version `v` (absent: 0; every
-- write bumps it, see apply.lua) are the caller's, so the state is not sent (the page's
-- budget counts the caller's `elements`: the same version is the same state);
-- {ver, sums} when only the version moved (the same incarnation, id: its other meta fields
-- are fixed at create, and the caller has them), or {ver, sums, extremes, layout or ''} when
-- `ver`'s flags say it has a layout or extremes;
-- else {the n meta fields as HMGET, sums, extremes}; or {} for a session that is gone
-- (TTL). It stops before the session that would take the page past the budget, but always
-- reads the first. A known session is asked its `ver` (keys.version: one GET, where an HMGET
-- of the meta costs twice as much from Lua, and a page asks a thousand); its layout and
-- extremes are read only where `ver` says it has them. A session without `ver` (not
-- written since it appeared) is read from its meta.
local budget = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local fields = {unpack(ARGV, 3, 2 + n)}
local m1, m2, s1, s2, e1, e2, v1, v2 = unpack(ARGV, 3 + n, 10 + n)
local out, total = {}, 0

-- The packed sums and extremes of a session, and the elements they hold.
local function state_of(name, with_extremes)
  local sums = redis.call('GET', s1 .. name .. s2) or ''
  local extremes = ''
  if with_extremes then extremes = redis.call('GET', e1 .. name .. e2) or '' end
  return sums, extremes, math.floor(#sums / 8) + math.floor(#extremes / 9)
end

for name, id, v, elements in string.gmatch(ARGV[11 + n],
                                           '([^\n]*)\n([^:\n]*):?([^:\n]*):?([^\n]*)\n') do
  local entry, size
  if id ~= '' then
    local ver = redis.call('GET', v1 .. name .. v2)
    if ver then
      local now_id, now_v, flags = string.match(ver, '^(%S*) (%S*) %S* (%S*)$')
      if now_id == id then
        if now_v == v then
          entry, size = 1, tonumber(elements)
        else
          local sums, extremes
          sums, extremes, size = state_of(name, string.find(flags, 'X', 1, true))
          if flags == '' then  -- the usual case: no layout, no extremes
            entry = {ver, sums}
          else
            local layout = ''
            if string.find(flags, 'L', 1, true) then
              layout = redis.call('HGET', m1 .. name .. m2, 'layout') or ''
            end
            entry = {ver, sums, extremes, layout}
          end
        end
      end
    end
  end
  if not entry then  -- unknown to the caller, re-created since, without `ver`, or gone
    local found = redis.call('HMGET', m1 .. name .. m2, unpack(fields))
    if not found[1] then  -- every session has its first field (metric)
      entry, size = {}, 0
    else
      local sums, extremes
      sums, extremes, size = state_of(name, true)
      entry = {found, sums, extremes}
    end
  end
  total = total + size
  if budget > 0 and #out > 0 and total > budget then
    break
  end
  out[#out + 1] = entry
end
return out
