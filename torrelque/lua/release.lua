--[[
release: takes finished tasks out of the queue. With a result, a task's
state is kept (final status, result, release time) for `ttl`; without one,
every trace of the task is removed. One call releases one task with a
result, or a batch of tasks without one (consecutive releases into one
pipeline share a call).

KEYS[1] working   sorted set: id -> stale deadline (microseconds)
KEYS[2] tasks     hash: id -> serialised payload
KEYS[3] stats     hash of the queue's counters
KEYS[4] events    queue-wide event channel
KEYS[5] task      prefix of task state keys: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] final status (3 completed, 4 rejected)
ARGV[3] '1': one task with a result follows: ARGV[4] its id, ARGV[5] the
        serialised result, ARGV[6] the time to keep them (integer
        milliseconds); '0': ARGV[4...] are the ids of tasks released
        without a result
Returns a list of one code per task: OK; UNKNOWN or NOT_WORKING when the
task is not in `working` (nothing is written for it then).
]]
local working_key, tasks_key, stats_key, events_channel, task_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local offset_us, status, with_result = ARGV[1], ARGV[2], ARGV[3] == '1'
local counter = tonumber(status) == STATUS_REJECTED and 'rejected' or 'completed'

local ids, state_keys = {}, {}
for i = 4, with_result and 4 or #ARGV do
  ids[#ids + 1] = ARGV[i]
  state_keys[#state_keys + 1] = task_prefix .. ':' .. ARGV[i]
end

-- Which ids are working, in one read; the others are refused.
local deadlines = redis.call('ZMSCORE', working_key, unpack(ids))
local codes, released, released_keys, seen = {}, {}, {}, {}
for i, id in ipairs(ids) do
  if deadlines[i] and not seen[id] then
    seen[id] = true
    codes[i] = OK
    released[#released + 1] = id
    released_keys[#released_keys + 1] = state_keys[i]
  elseif redis.call('EXISTS', state_keys[i]) == 1 then
    codes[i] = NOT_WORKING
  else
    codes[i] = UNKNOWN
  end
end
if #released == 0 then
  return codes
end

redis.call('ZREM', working_key, unpack(released))
redis.call('HDEL', tasks_key, unpack(released))
redis.call('HINCRBY', stats_key, 'released', #released)
redis.call('HINCRBY', stats_key, counter, #released)
if with_result then
  local id, state_key, result, ttl_ms = ids[1], state_keys[1], ARGV[5], ARGV[6]
  local now = us_text(clock_us(offset_us))
  redis.call('HSET', state_key, 'status', status, 'result', result, 'released', now)
  redis.call('PEXPIRE', state_key, ttl_ms)
  publish(events_channel, state_key, id, 'released', now, nil, result)
else
  redis.call('DEL', unpack(released_keys))
  released_keys[#released_keys + 1] = events_channel
  learn_listeners(released_keys)
  for i, id in ipairs(released) do
    publish(events_channel, released_keys[i], id, 'removed', nil, status)  -- reads the clock only to publish
  end
end
return codes
