-- create: make a session unless one of that name exists.
-- KEYS: meta, state, ext, history, idem, idemx, slices, slsum, slext, ver (the session's keys,
--       see keys.py)
-- ARGV: metric, args (JSON), config (JSON), created_at (unix s, string), ttl_seconds ('' = none),
--       id (this incarnation of the name), window bucket seconds and buckets ('' = no window),
--       distinct slice values per epoch ('' = not sliced)
-- Returns: {} when created; the existing meta as a flat HGETALL list otherwise.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGETALL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'metric', ARGV[1], 'args', ARGV[2], 'config', ARGV[3],
           'epoch', 0, 'created_at', ARGV[4], 'ttl', ARGV[5], 'id', ARGV[6], 'hfirst', 0,
           'x', 0)
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'wb', ARGV[7], 'wk', ARGV[8])
end
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[1], 'sm', ARGV[9])
end
redis.call('SET', KEYS[10], ARGV[6] .. ' 0 0 ')  -- id, version, epoch, flags (keys.version)
if ARGV[5] ~= '' then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
  redis.call('EXPIRE', KEYS[10], tonumber(ARGV[5]))
end
return {}
