--[[
enqueue: stores a new task and puts its id in `pending`, or in `delayed`
until it is due.

KEYS[1] tasks     hash: id -> serialised payload
KEYS[2] pending   list of ids waiting (pushed left, popped right)
KEYS[3] delayed   sorted set: id -> due time (microseconds)
KEYS[4] stats     hash of the queue's counters
KEYS[5] events    queue-wide event channel
KEYS[6] wake      channel that wakes a sleeping scheduled sweep
KEYS[7] task      prefix of task state keys: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] task id
ARGV[3] serialised payload
ARGV[4] task timeout (seconds), or '' for DEFAULT_TIMEOUT
ARGV[5] delay (integer microseconds; 0 puts the task in pending)
Returns OK, or DUPLICATE (nothing written) when the id is already taken.
]]
local tasks_key, pending_key, delayed_key = KEYS[1], KEYS[2], KEYS[3]
local stats_key, events_channel, wake_channel, task_prefix = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local offset_us, id, payload = ARGV[1], ARGV[2], ARGV[3]
local timeout, delay_us = ARGV[4], tonumber(ARGV[5])

local state_key = task_prefix .. ':' .. id
if redis.call('HEXISTS', tasks_key, id) == 1 or redis.call('EXISTS', state_key) == 1 then
  return DUPLICATE
end

local now_us = clock_us(offset_us)
local now = us_text(now_us)
local status = enter_queue(pending_key, delayed_key, stats_key, wake_channel, id, now_us, delay_us)
redis.call('HSET', tasks_key, id, payload)
redis.call('HSET', state_key, 'status', status, 'enqueued', now)
if timeout ~= '' then
  redis.call('HSET', state_key, 'timeout', timeout)
end
redis.call('HINCRBY', stats_key, 'enqueued', 1)
publish(events_channel, state_key, id, 'enqueued', now)
return OK
