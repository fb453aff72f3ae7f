-- reset: close the current epoch into the history, clear the state, open the next epoch.
-- KEYS: meta, state, ext, history, idem, idemx, slices, slsum, slext, ver (the session's keys,
--       see keys.py)
-- ARGV: expected epoch ('' = any), history limit (closed epochs kept)
-- Returns: {"missing"}; {"E", current epoch}; or {"OK", closed epoch, closed_at, sums,
-- extremes, meta, slices} where closed_at is "<unix s>.<us>", sums and extremes the closed
-- epoch's packed state, meta the session's flat HGETALL after the reset, and slices (a sliced
-- session) {flat HGETALL of value -> slot, slsum, slext} or {}.
-- History: field <epoch> of the history hash holds "S<closed_at>\n<u32 len(sums)><sums><ext>"
-- (raw) until the service replaces it by "R<closed_at>\n<result JSON>" (compact.lua). A
-- sliced session's raw entry is "T<closed_at>\n<u32 x 6: len(sums), len(ext), len(slots
-- JSON), len(slsum), ss, se><sums><ext><slots JSON><slsum><slext>". Epochs
-- are consecutive, so the oldest kept is meta's `hfirst` and trimming is one HDEL per reset.
local meta, state, ext, history = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local slot_of, slsum, slext = KEYS[7], KEYS[8], KEYS[9]
if redis.call('EXISTS', meta) == 0 then
  return {'missing'}
end
local epoch = tonumber(redis.call('HGET', meta, 'epoch'))
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= epoch then
  return {'E', tostring(epoch)}
end
local sums = redis.call('GET', state) or ''
local extremes = redis.call('GET', ext) or ''
local t = redis.call('TIME')
local closed_at = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local slices = {}
if redis.call('HEXISTS', meta, 'sm') == 1 then
  local flat = redis.call('HGETALL', slot_of)
  local by_value = {}
  for j = 1, #flat, 2 do by_value[flat[j]] = tonumber(flat[j + 1]) end
  local slots_json = cjson.encode(by_value)
  local slice_sums, slice_ext = redis.call('GET', slsum) or '', redis.call('GET', slext) or ''
  local stride = redis.call('HMGET', meta, 'ss', 'se')
  redis.call('HSET', history, epoch, 'T' .. closed_at .. '\n' ..
             struct.pack('<I4I4I4I4I4I4', #sums, #extremes, #slots_json, #slice_sums,
                         tonumber(stride[1] or '0'), tonumber(stride[2] or '0')) ..
             sums .. extremes .. slots_json .. slice_sums .. slice_ext)
  slices = {flat, slice_sums, slice_ext}
  redis.call('DEL', slot_of, slsum, slext)
else
  redis.call('HSET', history, epoch,
             'S' .. closed_at .. '\n' .. struct.pack('<I4', #sums) .. sums .. extremes)
end
local first = tonumber(redis.call('HGET', meta, 'hfirst') or '0')
local keep_from = epoch - tonumber(ARGV[2]) + 1
while first < keep_from do
  redis.call('HDEL', history, first)
  first = first + 1
end
redis.call('HSET', meta, 'hfirst', first)
redis.call('DEL', state, ext)
local next_epoch = redis.call('HINCRBY', meta, 'epoch', 1)
local version = redis.call('HINCRBY', meta, 'v', 1)  -- a write of the state (see apply.lua)
local kept = redis.call('HMGET', meta, 'id', 'layout', 'x')
redis.call('SET', KEYS[10], kept[1] .. ' ' .. version .. ' ' .. next_epoch .. ' '
           .. (kept[2] and 'L' or '') .. (kept[3] ~= '0' and 'X' or ''))  -- keys.version
local ttl = redis.call('HGET', meta, 'ttl')
if ttl and ttl ~= '' then
  for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, tonumber(ttl)) end
end
return {'OK', tostring(epoch), closed_at, sums, extremes, redis.call('HGETALL', meta), slices}
