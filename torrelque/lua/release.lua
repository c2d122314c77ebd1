--[[
release: takes a finished task out of the queue. With a result, its state
is kept (final status, result, release time) for `ttl`; without one, every
trace of the task is removed.

KEYS[1] working   sorted set: id -> stale deadline (microseconds)
KEYS[2] tasks     hash: id -> serialised payload
KEYS[3] stats     hash of the queue's counters
KEYS[4] events    queue-wide event channel
KEYS[5] task      prefix of task state keys: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] task id
ARGV[3] final status (3 completed, 4 rejected)
ARGV[4] serialised result; absent when there is none (the usual case,
        which keeps the call small)
ARGV[5] time to keep the state with its result (integer milliseconds);
        absent without a result
Returns OK; UNKNOWN or NOT_WORKING when the task is not in `working`
(nothing is written then).
]]
local working_key, tasks_key, stats_key, events_channel, task_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local offset_us, id, status, result, ttl_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local has_result = result ~= nil

local state_key = task_prefix .. ':' .. id
if redis.call('ZREM', working_key, id) == 0 then
  if redis.call('EXISTS', state_key) == 1 then
    return NOT_WORKING
  end
  return UNKNOWN
end

redis.call('HDEL', tasks_key, id)
redis.call('HINCRBY', stats_key, 'released', 1)
redis.call('HINCRBY', stats_key, tonumber(status) == STATUS_REJECTED and 'rejected' or 'completed', 1)
if has_result then
  local now = us_text(clock_us(offset_us))
  redis.call('HSET', state_key, 'status', status, 'result', result, 'released', now)
  redis.call('PEXPIRE', state_key, ttl_ms)
  publish(events_channel, state_key, id, 'released', now, nil, result)
else
  redis.call('DEL', state_key)
  publish(events_channel, state_key, id, 'removed', nil, status)  -- the time only if it is sent
end
return OK
