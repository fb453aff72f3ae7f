-- read: a session's meta and current state, together.
-- KEYS: meta, state (the session's keys, see keys.py)
-- Returns: {meta as flat HGETALL, state as flat HGETALL}, or {} when there is no session.
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then
  return {}
end
return {meta, redis.call('HGETALL', KEYS[2])}
