-- delete: remove a session with all its state, history and idempotency keys.
-- KEYS: meta, state, ext, history, idem, idemx (the session's keys, see keys.py)
-- Returns: 1 if the session existed, else 0. UNLINK frees large values off Redis' main thread.
local existed = redis.call('EXISTS', KEYS[1])
redis.call('UNLINK', unpack(KEYS))
return existed
