-- reset: close the current epoch into the history, clear the state, open the next epoch.
-- KEYS: meta, state, history, idem, idemx (the session's keys, see keys.py)
-- ARGV: expected epoch ('' = any), history limit (entries kept)
-- Returns: {"missing"}; {"E", current epoch}; or {"OK", closed epoch, closed_at, state, meta}
-- where closed_at is "<unix s>.<us>", state the closed epoch's flat HGETALL and meta the
-- session's flat HGETALL after the reset.
local meta, state, history = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', meta) == 0 then
  return {'missing'}
end
local epoch = tonumber(redis.call('HGET', meta, 'epoch'))
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= epoch then
  return {'E', tostring(epoch)}
end
local fields = redis.call('HGETALL', state)
local t = redis.call('TIME')
local closed_at = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
redis.call('RPUSH', history, cjson.encode({epoch = epoch, closed_at = closed_at, state = fields}))
redis.call('LTRIM', history, -tonumber(ARGV[2]), -1)
redis.call('DEL', state)
redis.call('HINCRBY', meta, 'epoch', 1)
local ttl = redis.call('HGET', meta, 'ttl')
if ttl and ttl ~= '' then
  for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, tonumber(ttl)) end
end
return {'OK', tostring(epoch), closed_at, fields, redis.call('HGETALL', meta)}
