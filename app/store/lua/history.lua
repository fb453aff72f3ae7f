-- history: a session's closed epochs.
-- KEYS: meta, history (the session's keys, see keys.py)
-- Returns: {} when there is no session, else {flat HGETALL of the history hash} (see reset.lua
-- for the entries' format).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
return {redis.call('HGETALL', KEYS[2])}
