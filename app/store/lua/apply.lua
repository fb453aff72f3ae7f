-- apply: add one or more batches' increments to a session's state, atomically per batch.
-- KEYS: meta, state, history, idem, idemx (the session's keys, see keys.py)
-- ARGV[1]: JSON list of batches, each {"s": [field, delta, ...] (sums), "x": [...] (max),
--          "m": [...] (min), "n": samples, "e": expected epoch, "k": idempotency key,
--          "i": session id the batch was computed for, "l": the layout (canonical JSON) a
--          lazily shaped metric was built with; the last four optional}.
--          Deltas are strings: Lua numbers would lose digits.
-- ARGV[2]: idempotency window in ms.
-- Returns: one string per batch: "A <epoch> <samples>" applied, "R <epoch> <samples>" replay
--          of a key's first answer, "E <epoch>" epoch precondition failed, "S" the session
--          was re-created since the batch was computed, "L <layout>" the session's variables
--          were built for another layout; or {"missing"}.
local meta, state, idem, idemx = KEYS[1], KEYS[2], KEYS[4], KEYS[5]
if redis.call('EXISTS', meta) == 0 then
  return {'missing'}
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Forget idempotency keys older than the window (a bounded amount per call).
local expired = redis.call('ZRANGEBYSCORE', idemx, '-inf', now_ms, 'LIMIT', 0, 256)
if #expired > 0 then
  redis.call('HDEL', idem, unpack(expired))
  redis.call('ZREM', idemx, unpack(expired))
end

-- HINCRBYFLOAT refuses NaN/inf; such values poison the state as they would in Keras.
local function add(field, delta)
  local ok = redis.pcall('HINCRBYFLOAT', state, field, delta)
  if type(ok) == 'table' and ok.err then
    local current = tonumber(redis.call('HGET', state, field) or '0')
    redis.call('HSET', state, field, tostring(current + tonumber(delta)))
  end
end

local function extreme(pairs_, better)
  for j = 1, #pairs_, 2 do
    local current = redis.call('HGET', state, pairs_[j])
    if (not current) or better(tonumber(pairs_[j + 1]), tonumber(current)) then
      redis.call('HSET', state, pairs_[j], pairs_[j + 1])
    end
  end
end

local epoch = tonumber(redis.call('HGET', meta, 'epoch'))
local id = redis.call('HGET', meta, 'id')
local layout = redis.call('HGET', meta, 'layout')
local batches = cjson.decode(ARGV[1])
local window = tonumber(ARGV[2])
local out = {}
for i, b in ipairs(batches) do
  local prior = false
  if b.k then prior = redis.call('HGET', idem, b.k) end
  if prior then
    out[i] = 'R ' .. prior
  elseif b.i and b.i ~= id then
    out[i] = 'S'
  elseif b.e and b.e ~= epoch then
    out[i] = 'E ' .. epoch
  elseif b.l and layout and b.l ~= layout then
    out[i] = 'L ' .. layout
  else
    if b.l and not layout then
      layout = b.l
      redis.call('HSET', meta, 'layout', layout)
    end
    local s = b.s or {}
    for j = 1, #s, 2 do add(s[j], s[j + 1]) end
    extreme(b.x or {}, function(new, old) return new > old or new ~= new end)
    extreme(b.m or {}, function(new, old) return new < old or new ~= new end)
    local answer = epoch .. ' ' .. b.n
    if b.k then
      redis.call('HSET', idem, b.k, answer)
      redis.call('ZADD', idemx, now_ms + window, b.k)
    end
    out[i] = 'A ' .. answer
  end
end

local ttl = redis.call('HGET', meta, 'ttl')
if ttl and ttl ~= '' then
  for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, tonumber(ttl)) end
end
return out
