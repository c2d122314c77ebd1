--[[
requeue: returns a working task to `pending`, or to `delayed` until it is due.

KEYS[1] working   sorted set: id -> stale deadline (microseconds)
KEYS[2] pending   list of ids waiting (pushed left, popped right)
KEYS[3] delayed   sorted set: id -> due time (microseconds)
KEYS[4] stats     hash of the queue's counters
KEYS[5] events    queue-wide event channel
KEYS[6] wake      channel that wakes a sleeping scheduled sweep
KEYS[7] task      prefix of task state keys: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] task id
ARGV[3] delay (integer microseconds; 0 puts the task in pending)
ARGV[4] new task timeout (seconds), or '' to keep the task's own
Returns OK; UNKNOWN or NOT_WORKING when the task is not in `working`
(nothing is written then).
]]
local working_key, pending_key, delayed_key = KEYS[1], KEYS[2], KEYS[3]
local stats_key, events_channel, wake_channel, task_prefix = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local offset_us, id, delay_us, timeout = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]

local state_key = task_prefix .. ':' .. id
local refused = leave_working(working_key, state_key, id)
if refused then
  return refused
end

local now_us = clock_us(offset_us)
local now = us_text(now_us)
local status = enter_queue(pending_key, delayed_key, stats_key, wake_channel, id, now_us, delay_us)
redis.call('HSET', state_key, 'status', status, 'requeued', now)
redis.call('HINCRBY', state_key, 'requeues', 1)
if timeout ~= '' then
  redis.call('HSET', state_key, 'timeout', timeout)
end
redis.call('HINCRBY', stats_key, 'requeued', 1)
publish(events_channel, state_key, id, 'requeued', now)
return OK
