-- delete: remove a session with all its state, history and idempotency keys.
-- KEYS: meta, state, history, idem, idemx (the session's keys, see keys.py)
-- Returns: 1 if the session existed, else 0.
local existed = redis.call('EXISTS', KEYS[1])
redis.call('DEL', unpack(KEYS))
return existed
