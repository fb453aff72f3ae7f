-- read: a session's meta and current state, together.
-- KEYS: meta, state, ext (the session's keys, see keys.py); with ARGV[1] = 'slices' also
--       slices, slsum (for a whole-state write of a sliced batch, redis.py `_apply_whole`)
-- Returns: {meta as flat HGETALL, packed sums, packed extremes} (see store/state.py), then
-- with 'slices' the flat HGETALL of value -> slot and the slices' packed sums; or {} when
-- there is no session. Packed strings parse fast whatever the state's size.
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then
  return {}
end
local out = {meta, redis.call('GET', KEYS[2]) or '', redis.call('GET', KEYS[3]) or ''}
if ARGV[1] == 'slices' then
  out[4] = redis.call('HGETALL', KEYS[4])
  out[5] = redis.call('GET', KEYS[5]) or ''
end
return out
