-- apply: add one or more batches' increments to a session's state, atomically per batch.
-- KEYS: meta, state, ext, history, idem, idemx, slices, slsum, slext, ver (the session's keys,
--       see keys.py)
-- ARGV[1]: idempotency window in ms; ARGV[2]: idempotency keys kept per session;
-- ARGV[3]: JSON list of batch headers {"n": samples, "e": expected epoch, "k": idempotency
--          key, "f": the request fingerprint the key is bound to, "i": session id the batch
--          was computed for, "l": the layout (canonical JSON) a lazily shaped metric was
--          built with, "r": number of runs, "w": the state version the batch was computed
--          against when it carries the whole new state instead of runs, "s": the batch's
--          distinct slice values, "z": [sum, extreme] elements of one slice's state}; all
--          but "n" and "r" optional.
-- ARGV[4]: now, Unix seconds by the store's clock (the window bucket a batch lands in);
-- ARGV[5]: the session's window key prefix (keys.window_prefix).
-- ARGV[6 + 2j], ARGV[7 + 2j] (batch j, from 0): its runs, packed '<BI4I4I4' each (kind 0
--          sum, 1 max, 2 min; target 0 the session's state, t >= 1 the slice "s"[t]; start
--          index; count), and their values, packed little-endian doubles; with "w", the whole
--          new sums string instead (the runs are empty, or with "ns" the slices' whole new
--          sums string: "ns" lists [value, slot] of the slice values the batch brings,
--          slotted by the service against the state of version "w"); "j": a merged batch's
--          other requests, [key or "", fingerprint, samples] each, whose keys are answered
--          as if each had been applied alone.
-- Returns: one string per batch: "A <epoch> <samples>" applied, "R <epoch> <samples>" replay
--          of a key's first answer, "K" key bound to another request, "E <epoch>" epoch
--          precondition failed, "S" the session was re-created since the batch was computed,
--          "L <layout>" the session's variables were built for another layout, "V" the state
--          changed since a whole-state batch read it, "J" a merged batch carries a key already
--          answered (nothing applied: the service sends its requests alone),
--          "M <limit> <have> <j,...>" its new slice
--          values "s"[j] would take the session past its limit (meta `sm`); or {"missing"}.
-- A session with a window (meta `wb` bucket seconds, `wk` buckets) also adds each applied
-- batch's sums to its current bucket, the string `<prefix><id>:<floor(now / wb)>`, which
-- EXPIREs once no window can reach it; meta `wl` is the last bucket written (delete.lua).
-- Whole-state batches are refused ("V") on a windowed session: the service sends runs. A
-- sliced windowed session's bucket also keeps its slices: `<bucket>:slots` (value -> slot in
-- that bucket) and `<bucket>:slsum` (packed like `slsum`), expiring with the bucket; a bucket
-- admits at most the session's limit of values too ("B <limit> <have> <j,...>").
-- Meta field `v` counts the writes of the state (applied batches and resets): a whole-state
-- batch lands only if no other write came between its read and this script. `ver` copies
-- id, `v`, epoch and two flags for listings (keys.version): `L` a layout, `X` extremes
-- written (meta `x`: else `ext` is empty).
-- State layout (store/state.py): sums are float64 at 8*i of `state`; extremes are a set flag
-- and a float64 at 9*i of `ext`. Missing bytes read as zero (sum 0, extreme unset).
-- Slices: `slices` maps each value the epoch has seen to its slot k, in order of arrival;
-- slot k's state is at k x `ss` elements of `slsum` and k x `se` of `slext` (meta `ss`, `se`:
-- one state's sizes, recorded by the first sliced batch). Reset clears all three.
local meta, state, ext, idem, idemx = KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6]
local slot_of, slsum, slext = KEYS[7], KEYS[8], KEYS[9]
if redis.call('EXISTS', meta) == 0 then
  return {'missing'}
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, keep = tonumber(ARGV[1]), tonumber(ARGV[2])

-- Forget idempotency keys older than the window (a bounded amount per call).
local function forget(list)
  if #list > 0 then
    redis.call('HDEL', idem, unpack(list))
    redis.call('ZREM', idemx, unpack(list))
  end
end
forget(redis.call('ZRANGEBYSCORE', idemx, '-inf', now_ms, 'LIMIT', 0, 256))

local CHUNK = 128  -- doubles per struct call (Lua's stack bounds how many one call returns)

-- n doubles of `s` from byte `pos` (1-based); those past the end of `s` read as 0.
local function doubles(s, pos, n)
  local out = {}
  local avail = math.max(0, math.min(n, math.floor((#s - pos + 1) / 8)))
  local i = 0
  while i < avail do
    local m = math.min(CHUNK, avail - i)
    local got = {struct.unpack('<' .. string.rep('d', m), s, pos + i * 8)}
    for j = 1, m do out[i + j] = got[j] end
    i = i + m
  end
  for j = avail + 1, n do out[j] = 0 end
  return out
end

local function pack_doubles(list)
  local parts, i, n = {}, 0, #list
  while i < n do
    local m = math.min(CHUNK, n - i)
    parts[#parts + 1] = struct.pack('<' .. string.rep('d', m), unpack(list, i + 1, i + m))
    i = i + m
  end
  return table.concat(parts)
end

-- Sums: one GETRANGE and one SETRANGE per run of `key` (the state, or a window bucket);
-- NaN/inf poison the state as they do in Keras.
local function add_run(key, start, count, values, vpos)
  local old = redis.call('GETRANGE', key, start * 8, (start + count) * 8 - 1)
  local current = doubles(old, 1, count)
  local delta = doubles(values, vpos, count)
  for i = 1, count do current[i] = current[i] + delta[i] end
  redis.call('SETRANGE', key, start * 8, pack_doubles(current))
end

-- Extremes: keep the larger (max) or smaller (min); an unset element takes the new value,
-- and NaN wins as in the memory store.
local extremes_written = false
local function extreme_run(key, start, count, values, vpos, is_max)
  extremes_written = extremes_written or key == ext
  local old = redis.call('GETRANGE', key, start * 9, (start + count) * 9 - 1)
  local new = doubles(values, vpos, count)
  local parts = {}
  for i = 1, count do
    local v, off = new[i], (i - 1) * 9 + 1
    if #old >= off + 8 and string.byte(old, off) == 1 then
      local cur = struct.unpack('<d', old, off + 1)
      local better = (is_max and v > cur) or ((not is_max) and v < cur) or v ~= v
      if not better then v = cur end
    end
    parts[i] = '\1' .. struct.pack('<d', v)
  end
  redis.call('SETRANGE', key, start * 9, table.concat(parts))
end

-- A run of target 0 goes to the session's state (and window bucket), of target t to the
-- slot of slice t, `slots[t]`, at that slot's offset in the slices' strings (`stride`), and
-- on a windowed session to its slot in the bucket's slices, `bucket_slots[t]`.
local function apply_runs(runs, values, count, bucket_key, slots, bucket_slots, stride)
  local pos, vpos = 1, 1
  for _ = 1, count do
    local kind, target, start, n
    kind, target, start, n, pos = struct.unpack('<BI4I4I4', runs, pos)
    if target == 0 then
      if kind == 0 then
        add_run(state, start, n, values, vpos)
        if bucket_key then add_run(bucket_key, start, n, values, vpos) end
      else extreme_run(ext, start, n, values, vpos, kind == 1) end
    else
      local slot = slots[target]
      if kind == 0 then
        add_run(slsum, start + slot * stride[1], n, values, vpos)
        if bucket_key then  -- windows hold sums only (the service checks)
          add_run(bucket_key .. ':slsum', start + bucket_slots[target] * stride[1], n, values,
                  vpos)
        end
      else extreme_run(slext, start + slot * stride[2], n, values, vpos, kind == 1) end
    end
    vpos = vpos + n * 8
  end
end

-- The slots of a batch's slice values in `hash` (value -> slot), the new ones numbered
-- after the others, and the positions of the new ones; or nil and why ("<limit> <have>
-- <j,...>": the new values' positions) when they would take it past `limit`. Writes nothing:
-- `admit` does, once every hash the batch touches has room.
local function plan(hash, values, limit)
  local slots, new = {}, {}
  for j, value in ipairs(values) do
    local slot = redis.call('HGET', hash, value)
    if slot then slots[j] = tonumber(slot) else new[#new + 1] = j end
  end
  local have = redis.call('HLEN', hash)
  if #new > 0 and have + #new > limit then
    return nil, limit .. ' ' .. have .. ' ' .. table.concat(new, ',')
  end
  for k, j in ipairs(new) do slots[j] = have + k - 1 end
  return slots, new
end

local function admit(hash, values, slots, new)
  for _, j in ipairs(new) do redis.call('HSET', hash, values[j], slots[j]) end
end

local fields = redis.call('HMGET', meta, 'epoch', 'v', 'id', 'layout', 'wb', 'wk', 'sm', 'ss',
                         'x')
local epoch = tonumber(fields[1])
local version = tonumber(fields[2] or '0')
local first_version = version
local id, layout = fields[3], fields[4]
local bucket_seconds, buckets = tonumber(fields[5] or ''), tonumber(fields[6] or '')
local slice_limit, stride_known = tonumber(fields[7] or '') or 0, fields[8] ~= false
local bucket, bucket_key, now = nil, nil, tonumber(ARGV[4])
if bucket_seconds then
  bucket = math.floor(now / bucket_seconds)
  bucket_key = ARGV[5] .. id .. ':' .. string.format('%d', bucket)
end
local bucket_written, bucket_sliced = false, false

-- Record a key's answer (bound to the request's fingerprint) for the idempotency window;
-- the oldest keys past the session's bound go at the end of the call.
local remembered = 0
local function remember(key, fingerprint, answer)
  redis.call('HSET', idem, key, fingerprint .. ' ' .. answer)
  redis.call('ZADD', idemx, now_ms + window, key)
  remembered = remembered + 1
end

-- Apply batch i (its preconditions checked, its slices given their slots); its answer.
local function land(i, b, slots, bucket_slots)
  if b.l and not layout then
    layout = b.l
    redis.call('HSET', meta, 'layout', layout)
  end
  if b.z and not stride_known then
    redis.call('HSET', meta, 'ss', b.z[1], 'se', b.z[2])
    stride_known = true
  end
  if b.w then
    redis.call('SET', state, ARGV[7 + 2 * (i - 1)])
    if b.ns then  -- a sliced whole-state batch: its new slots, and every slice's sums
      for _, pair in ipairs(b.ns) do redis.call('HSET', slot_of, pair[1], pair[2]) end
      redis.call('SET', slsum, ARGV[6 + 2 * (i - 1)])
    end
  else
    apply_runs(ARGV[6 + 2 * (i - 1)], ARGV[7 + 2 * (i - 1)], b.r, bucket_key, slots,
               bucket_slots, b.z)
    bucket_written = bucket_key ~= nil
    bucket_sliced = bucket_sliced or (bucket_written and b.s ~= nil)
  end
  version = version + 1
  local answer = epoch .. ' ' .. b.n
  if b.k then remember(b.k, b.f or '', answer) end
  for _, other in ipairs(b.j or {}) do
    if other[1] ~= '' then remember(other[1], other[2], epoch .. ' ' .. other[3]) end
  end
  return 'A ' .. answer
end

-- Has any key of merged batch `b` (its own, its joined requests') been answered?
local function merged_key_seen(b)
  if b.k and redis.call('HEXISTS', idem, b.k) == 1 then return true end
  for _, other in ipairs(b.j) do
    if other[1] ~= '' and redis.call('HEXISTS', idem, other[1]) == 1 then return true end
  end
  return false
end

-- Batch i's answer: applied, or why not (a replayed key, a failed precondition, no room).
local function answer_for(i, b)
  if b.j and merged_key_seen(b) then return 'J' end
  local prior = false
  if b.k then prior = redis.call('HGET', idem, b.k) end
  if prior then
    local fp, answer = string.match(prior, '^(%S*) (.*)$')
    if fp == (b.f or '') then return 'R ' .. answer end
    return 'K'
  end
  if b.i and b.i ~= id then return 'S' end
  if b.e and b.e ~= epoch then return 'E ' .. epoch end
  if b.l and layout and b.l ~= layout then return 'L ' .. layout end
  if b.w and (b.w ~= version or bucket_key) then return 'V' end
  -- Slice values: admitted to the epoch and, on a windowed session, to the current bucket
  -- (each keeps at most the session's limit), or the batch is refused ("M", "B").
  local slots, bucket_slots, new, bucket_new = {}, {}, {}, {}
  if b.s then
    slots, new = plan(slot_of, b.s, slice_limit)
    if not slots then return 'M ' .. new end
    if bucket_key then
      bucket_slots, bucket_new = plan(bucket_key .. ':slots', b.s, slice_limit)
      if not bucket_slots then return 'B ' .. bucket_new end
    end
    admit(slot_of, b.s, slots, new)
    if bucket_key then admit(bucket_key .. ':slots', b.s, bucket_slots, bucket_new) end
  end
  return land(i, b, slots, bucket_slots)
end

local batches = cjson.decode(ARGV[3])
local out = {}
for i, b in ipairs(batches) do
  out[i] = answer_for(i, b)
end

if remembered > 0 then
  local excess = math.min(remembered + 256, redis.call('ZCARD', idemx) - keep)
  if excess > 0 then forget(redis.call('ZRANGE', idemx, 0, excess - 1)) end
end
if version ~= first_version then
  redis.call('HSET', meta, 'v', version)
  -- Meta `x`: '1' once extremes were written, '0' before (create.lua); absent on a session
  -- made before the field existed, which is asked once whether it has extremes.
  local x = fields[9]
  if extremes_written then
    x = '1'
  elseif not x then
    x = redis.call('EXISTS', ext) == 1 and '1' or '0'
  end
  if x ~= fields[9] then
    redis.call('HSET', meta, 'x', x)
  end
  redis.call('SET', KEYS[10], id .. ' ' .. version .. ' ' .. epoch .. ' '
             .. (layout and 'L' or '') .. (x == '1' and 'X' or ''))
end
if bucket_written then
  -- Gone once bucket + buckets begins: no window reaches it then.
  local left = math.max(1, math.ceil((bucket + buckets) * bucket_seconds - now))
  redis.call('EXPIRE', bucket_key, left)
  if bucket_sliced then
    redis.call('EXPIRE', bucket_key .. ':slots', left)
    redis.call('EXPIRE', bucket_key .. ':slsum', left)
  end
  redis.call('HSET', meta, 'wl', string.format('%d', bucket))
end
local ttl = redis.call('HGET', meta, 'ttl')
if ttl and ttl ~= '' then
  for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, tonumber(ttl)) end
end
return out
