--[[
enqueue: stores new tasks and puts each id in `pending`, or in `delayed`
until it is due. One call takes one task, or a batch of them (consecutive
enqueues into one pipeline share a call).

KEYS[1] tasks     hash: id -> serialised payload
KEYS[2] pending   list of ids waiting (pushed left, popped right)
KEYS[3] delayed   sorted set: id -> due time (microseconds)
KEYS[4] stats     hash of the queue's counters
KEYS[5] events    queue-wide event channel
KEYS[6] wake      channel that wakes a sleeping scheduled sweep
KEYS[7] task      prefix of task state keys: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2...] four values per task:
        task id,
        serialised payload,
        task timeout (seconds), or '' for DEFAULT_TIMEOUT,
        delay (integer microseconds; 0 puts the task in pending)
Returns a list of one code per task: OK, or DUPLICATE (nothing written
for that task) when its id is already taken.
]]
local tasks_key, pending_key, delayed_key = KEYS[1], KEYS[2], KEYS[3]
local stats_key, events_channel, wake_channel, task_prefix = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local offset_us = ARGV[1]

local now_us = clock_us(offset_us)
local now = us_text(now_us)
local codes, added, pending_ids, channels = {}, {}, {}, {events_channel}
for i = 2, #ARGV, 4 do
  local id, payload, timeout, delay_us = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local state_key = task_prefix .. ':' .. id
  -- A kept state (a released task's result) takes an id as much as a payload.
  if redis.call('EXISTS', state_key) == 1 or redis.call('HSETNX', tasks_key, id, payload) == 0 then
    codes[#codes + 1] = DUPLICATE
  else
    local status = STATUS_PENDING
    if delay_us > 0 then
      status = enter_queue(pending_key, delayed_key, stats_key, wake_channel, id, now_us, delay_us)
    else
      pending_ids[#pending_ids + 1] = id
    end
    if timeout ~= '' then
      redis.call('HSET', state_key, 'status', status, 'enqueued', now, 'timeout', timeout)
    else
      redis.call('HSET', state_key, 'status', status, 'enqueued', now)
    end
    codes[#codes + 1] = OK
    added[#added + 1] = {id, state_key}
    channels[#channels + 1] = state_key
  end
end
if #pending_ids > 0 then
  redis.call('LPUSH', pending_key, unpack(pending_ids))
end
if #added > 0 then
  redis.call('HINCRBY', stats_key, 'enqueued', #added)
  learn_listeners(channels)
  for _, task in ipairs(added) do
    publish(events_channel, task[2], task[1], 'enqueued', now)
  end
end
return codes
