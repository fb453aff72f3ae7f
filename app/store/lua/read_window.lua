-- read_window: a windowed session's meta and the buckets of its last `n` window buckets.
-- KEYS: meta (the session's, see keys.py)
-- ARGV[1]: now, Unix seconds by the store's clock; ARGV[2]: n, buckets wanted (the current one
--          and the n - 1 before it); ARGV[3]: the session's window key prefix; ARGV[4]: '' for
--          the buckets' sums, 'all' for their slices, 'one' for the slice ARGV[5] only.
-- Returns: {meta as flat HGETALL, {per bucket, oldest first: its packed sums ('' if empty);
--          with 'all' {flat HGETALL of value -> slot, its slices' packed sums}; with 'one'
--          {slot ('' if the bucket has not seen the value), that slot's packed sums}}}, or
--          {} when there is no session. O(n) reads, nothing scanned.
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then
  return {}
end
local fields = redis.call('HMGET', KEYS[1], 'id', 'wb', 'ss')
local bucket_seconds = tonumber(fields[2] or '')
local stride = tonumber(fields[3] or '0')
local out = {}
if bucket_seconds then
  local last = math.floor(tonumber(ARGV[1]) / bucket_seconds)
  local n = tonumber(ARGV[2])
  for index = last - n + 1, last do
    local key = ARGV[3] .. fields[1] .. ':' .. string.format('%d', index)
    if ARGV[4] == 'all' then
      out[#out + 1] = {redis.call('HGETALL', key .. ':slots'),
                       redis.call('GET', key .. ':slsum') or ''}
    elseif ARGV[4] == 'one' then
      local slot = redis.call('HGET', key .. ':slots', ARGV[5])
      if slot and stride > 0 then
        local at = tonumber(slot) * stride * 8
        out[#out + 1] = {slot, redis.call('GETRANGE', key .. ':slsum', at, at + stride * 8 - 1)}
      else
        out[#out + 1] = {'', ''}
      end
    else
      out[#out + 1] = redis.call('GET', key) or ''
    end
  end
end
return {meta, out}
