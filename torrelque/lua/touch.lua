--[[
touch: extends the lease of the attempt named by `lease`: its task's stale
deadline becomes now + the timeout. Publishes no event; wakes the scheduled
sweep only when the new deadline is the earliest.

KEYS[1] working   sorted set: id -> stale deadline (microseconds)
KEYS[2] wake      channel that wakes a sleeping scheduled sweep
KEYS[3] task      prefix of task state keys: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] task id
ARGV[4] lease token of the attempt, or '' for whichever is current
ARGV[5] timeout for this attempt from now (seconds), or '' for the task's own
Returns OK; LOST when another attempt owns the task, NOT_WORKING or UNKNOWN
when it is not working, ABORTING when it was cancelled (cancel.lua; its
attempt is to stop, and the sweep ends it at its deadline): nothing is
written then.
]]
local working_key, wake_channel, task_prefix = KEYS[1], KEYS[2], KEYS[3]
local offset_us, id, lease, timeout = ARGV[1], ARGV[3], ARGV[4], ARGV[5]

local state_key = task_prefix .. ':' .. id
local state = redis.call('HMGET', state_key, 'status', 'lease', 'timeout', 'cancel')
local where = attempt_of(redis.call('ZSCORE', working_key, id), state, lease, '', function() return false end)
if where ~= 'current' then
  return reply(where)
elseif state[4] then
  return reply(2)  -- ABORTING
end

local now_us = clock_us(offset_us)
local deadline_us = now_us + math.floor((tonumber(timeout) or tonumber(state[3]) or DEFAULT_TIMEOUT) * 1000000)
wake_if_earliest(working_key, wake_channel, deadline_us, now_us)
-- Removed and added again, not updated: a first write that does not grow
-- memory, so that a full server still lets a lease be extended.
redis.call('ZREM', working_key, id)
redis.call('ZADD', working_key, us_text(deadline_us), id)
return reply(OK)
