--[[
giveback: undoes a dequeue call whose tasks never reached the caller (it was
cancelled, or its reply was lost and not retried): the tasks still working
under its lease go back to the head of `pending`, as if never dequeued, and
the lease record becomes an empty list, so that the call, should it still
run late, takes nothing. Also sets the wake-up marker when ids are pending
(a consumer cancelled in BLPOP may have taken it); with lease '' that is all
it does.

KEYS[1] pending   list of ids waiting (pushed left, popped right)
KEYS[2] working   sorted set: id -> stale deadline (microseconds)
KEYS[3] stats     hash of the queue's counters
KEYS[4] events    queue-wide event channel
KEYS[5] ready     list: the wake-up marker of blocked consumers
KEYS[6] task      prefix of task state keys: "<prefix>:<id>"
KEYS[7] lease     prefix of lease records: "<prefix>:<token>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] lease token of the dequeue call, or ''
Returns how many tasks went back.
]]
local pending_key, working_key, stats_key, events_channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ready_key, task_prefix, lease = KEYS[5], KEYS[6], ARGV[3]
use_channels(events_channel)

local back = {}
if lease ~= '' then
  local record = redis.call('GET', KEYS[7] .. ':' .. lease)
  for _, id in ipairs(record and cjson.decode(record) or {}) do
    local state_key = task_prefix .. ':' .. id
    local owner = redis.call('HGET', state_key, 'lease')
    if owner == lease and redis.call('ZSCORE', working_key, id) then
      back[#back + 1] = {id, state_key, tonumber(redis.call('HGET', state_key, 'dequeues'))}
    end
  end
end

if #back > 0 then
  local now = us_text(clock_us(ARGV[1]))
  -- The call took its ids from the right end, first id first: pushing them
  -- back in reverse order restores that order.
  for i = #back, 1, -1 do
    local id, state_key, dequeues = back[i][1], back[i][2], back[i][3]
    redis.call('ZREM', working_key, id)
    redis.call('RPUSH', pending_key, id)
    redis.call('HDEL', state_key, 'lease')
    if dequeues > 1 then
      redis.call('HSET', state_key, 'status', STATUS_PENDING, 'dequeues', dequeues - 1)
    else
      redis.call('HSET', state_key, 'status', STATUS_PENDING)
      redis.call('HDEL', state_key, 'dequeues', 'dequeued')
    end
  end
  redis.call('HINCRBY', stats_key, 'returned', #back)
  for _, task in ipairs(back) do
    publish(events_channel, task[2], task[1], 'returned', now)
  end
end
if lease ~= '' then
  -- After the returns (whose first write, a ZREM, a full server allows);
  -- with nothing returned on a full server, the call is not voided.
  redis.pcall('SET', KEYS[7] .. ':' .. lease, '[]', 'PX', RETRY_WINDOW_MS)
end
if redis.call('LLEN', pending_key) > 0 then
  arm_ready(ready_key)
end
return reply(#back)
