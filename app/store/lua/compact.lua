-- compact: replace a closed epoch's raw state in the history by its result.
-- KEYS: history (the session's history hash, see keys.py)
-- ARGV: epoch, result (JSON)
-- Returns: 1 if a raw entry was replaced, else 0 (already compacted, trimmed, or deleted).
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry or string.sub(entry, 1, 1) ~= 'S' then
  return 0
end
local closed_at = string.match(entry, '^S([^\n]*)\n')
redis.call('HSET', KEYS[1], ARGV[1], 'R' .. closed_at .. '\n' .. ARGV[2])
return 1
