-- read_window: a windowed session's meta and the buckets of its last `n` window buckets.
-- KEYS: meta (the session's, see keys.py)
-- ARGV[1]: now, Unix seconds by the store's clock; ARGV[2]: n, buckets wanted (the current one
--          and the n - 1 before it); ARGV[3]: the session's window key prefix.
-- Returns: {meta as flat HGETALL, {packed sums of each bucket, oldest first ('' if empty)}},
--          or {} when there is no session. O(n): one GET per bucket, nothing scanned.
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then
  return {}
end
local fields = redis.call('HMGET', KEYS[1], 'id', 'wb')
local bucket_seconds = tonumber(fields[2] or '')
local out = {}
if bucket_seconds then
  local last = math.floor(tonumber(ARGV[1]) / bucket_seconds)
  local n = tonumber(ARGV[2])
  for index = last - n + 1, last do
    local key = ARGV[3] .. fields[1] .. ':' .. string.format('%d', index)
    out[#out + 1] = redis.call('GET', key) or ''
  end
end
return {meta, out}
