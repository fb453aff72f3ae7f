-- read_slices: a session's meta and the states of its slices, together.
-- KEYS: meta, slices, slsum, slext (the session's keys, see keys.py)
-- ARGV[1]: '' for every slice of the epoch, else one slice value.
-- Returns: {} when there is no session; else {meta as flat HGETALL, value -> slot as a flat
-- list, sums, extremes}. For every slice, sums and extremes are the whole slices' strings
-- (slot k at k x meta `ss` / `se` elements); for one value, only its slot's ranges (the flat
-- list then maps it to slot 0), or an empty list when the epoch has not seen it.
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then
  return {}
end
if ARGV[1] == '' then
  return {meta, redis.call('HGETALL', KEYS[2]), redis.call('GET', KEYS[3]) or '',
          redis.call('GET', KEYS[4]) or ''}
end
local slot = redis.call('HGET', KEYS[2], ARGV[1])
if not slot then
  return {meta, {}, '', ''}
end
slot = tonumber(slot)
local stride = redis.call('HMGET', KEYS[1], 'ss', 'se')
local sums, ext = tonumber(stride[1] or '0'), tonumber(stride[2] or '0')
local function range(key, elements, width)
  if elements == 0 then return '' end  -- GETRANGE 0 -1 would be the whole string
  return redis.call('GETRANGE', key, slot * elements * width, (slot + 1) * elements * width - 1)
end
return {meta, {ARGV[1], '0'}, range(KEYS[3], sums, 8), range(KEYS[4], ext, 9)}
