-- delete: remove a session with all its state, history, idempotency keys and window buckets
-- (with their slices).
-- KEYS: every key of the session (keys.session_keys)
-- ARGV[1]: the session's window key prefix (keys.window_prefix).
-- Returns: 1 if the session existed, else 0. UNLINK frees large values off Redis' main thread.
-- The buckets that can still exist are the `wk` up to the last one written (`wl`): older ones
-- have expired.
local existed = redis.call('EXISTS', KEYS[1])
local fields = redis.call('HMGET', KEYS[1], 'id', 'wk', 'wl')
local buckets, last = tonumber(fields[2] or ''), tonumber(fields[3] or '')
if buckets and last then
  for index = last - buckets + 1, last do
    local bucket = ARGV[1] .. fields[1] .. ':' .. string.format('%d', index)
    redis.call('UNLINK', bucket, bucket .. ':slots', bucket .. ':slsum')
  end
end
redis.call('UNLINK', unpack(KEYS))
return existed
