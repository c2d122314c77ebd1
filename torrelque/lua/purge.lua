--[[
purge: deletes tasks of the dead-letter set for good, their state with
them: the ids given, or (none given) those buried before a time.

KEYS[1] dead      sorted set: id -> time it was buried (microseconds)
KEYS[2] task      prefix of task state keys: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] buried before this time (integer microseconds), used when no id follows
ARGV[4] the most to delete by time in this call
ARGV[5...] ids
Returns how many it deleted.
]]
local dead_key, task_prefix = KEYS[1], KEYS[2]
local ids = {}
for i = 5, #ARGV do
  if redis.call('ZSCORE', dead_key, ARGV[i]) then
    ids[#ids + 1] = ARGV[i]
  end
end
if #ARGV < 5 then
  ids = redis.call('ZRANGEBYSCORE', dead_key, '-inf', '(' .. ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
end
if #ids == 0 then
  return reply(0)
end
local keys = {}
for _, id in ipairs(ids) do
  keys[#keys + 1] = task_prefix .. ':' .. id
end
redis.call('ZREM', dead_key, unpack(ids))
redis.call('DEL', unpack(keys))
return reply(#ids)
