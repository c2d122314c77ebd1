--[[
revive: returns a task of the dead-letter set to the queue, to be tried
again from the start: its payload goes back to `tasks`, its id to the tail
of `pending` (or to `delayed`), and its state loses the error, the result
and its dequeue count.

KEYS[1] dead      sorted set: id -> time it was buried (microseconds)
KEYS[2] tasks     hash: id -> serialised payload
KEYS[3] pending   list of ids waiting (pushed left, popped right)
KEYS[4] delayed   sorted set: id -> due time (microseconds)
KEYS[5] ready     list: the wake-up marker of blocked consumers
KEYS[6] stats     hash of the queue's counters
KEYS[7] events    queue-wide event channel
KEYS[8] wake      channel that wakes a sleeping scheduled sweep
KEYS[9] task      prefix of task state keys: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] task id
ARGV[4] delay (integer microseconds; 0 puts the task in pending)
Returns OK; UNKNOWN when the id is not in the dead-letter set.
]]
local dead_key, tasks_key, pending_key, delayed_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ready_key, stats_key, events_channel, wake_channel, task_prefix = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local offset_us, id, delay_us = ARGV[1], ARGV[3], tonumber(ARGV[4])
use_channels(events_channel)

local state_key = task_prefix .. ':' .. id
local payload = redis.call('HGET', state_key, 'payload')
if not redis.call('ZSCORE', dead_key, id) or not payload then
  return reply(UNKNOWN)
end

local now_us = clock_us(offset_us)
redis.call('ZREM', dead_key, id)
redis.call('HSET', tasks_key, id, payload)
redis.call('HDEL', state_key, 'payload', 'error', 'result', 'released', 'dequeues', 'dequeued', 'lease')
local status = enter_queue(pending_key, delayed_key, ready_key, stats_key, wake_channel, id, now_us, delay_us)
redis.call('HSET', state_key, 'status', status)
redis.call('HINCRBY', stats_key, 'revived', 1)
publish(events_channel, state_key, id, 'revived', us_text(now_us))
return reply(OK)
