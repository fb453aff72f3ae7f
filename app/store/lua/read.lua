-- read: a session's meta and current state, together.
-- KEYS: meta, state, ext (the session's keys, see keys.py)
-- Returns: {meta as flat HGETALL, packed sums, packed extremes} (see store/state.py), or {}
-- when there is no session. Two packed strings parse fast whatever the state's size.
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then
  return {}
end
return {meta, redis.call('GET', KEYS[2]) or '', redis.call('GET', KEYS[3]) or ''}
