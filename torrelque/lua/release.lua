--[[
release: ends the attempts named by their leases and takes their finished
tasks out of the queue. With a result, a task's state is kept (final
status, result, release time) for `ttl`; without one, the task is removed,
leaving for RETRY_WINDOW_MS only a tombstone key holding the call's token,
by which a retried call is recognised (and a retried enqueue of the id). One call releases one task
with a result, or a batch of tasks without one (consecutive releases into
one pipeline share a call).

KEYS[1] working   sorted set: id -> stale deadline (microseconds)
KEYS[2] tasks     hash: id -> serialised payload
KEYS[3] stats     hash of the queue's counters
KEYS[4] events    queue-wide event channel
KEYS[5] task      prefix of task state keys: "<prefix>:<id>"
KEYS[6] lease     prefix of lease records: "<prefix>:<token>"
KEYS[7] gone      prefix of tombstones: "<prefix>:<id>" -> token of the release call
KEYS[8] config    hash of the queue's settings (working_limit)
KEYS[9] pending   list of ids waiting
KEYS[10] ready    list: the wake-up marker of blocked consumers
KEYS[11] unique   prefix of the holds of caller-given ids: "<prefix>:<id>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] final status (3 completed, 4 rejected)
ARGV[4] token of this call
ARGV[5] '1': one task with a result follows: ARGV[6] its id, ARGV[7] its
        lease ('' for whichever attempt is current), ARGV[8] the
        serialised result, ARGV[9] the time to keep them (integer
        milliseconds);
        '0': ARGV[6...] are pairs of id and lease of tasks released
        without a result
Returns a list of one code per task (one code, not in a list, when the
caller reports refused events: a direct call of one task): OK (also when
its call was done before); LOST when another attempt owns the task, NOT_WORKING or
UNKNOWN when it is not working (nothing is written for it then).
]]
local working_key, tasks_key, stats_key, events_channel, task_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local lease_prefix, gone_prefix = KEYS[6], KEYS[7]
local offset_us, status, call, with_result = ARGV[1], ARGV[3], ARGV[4], ARGV[5] == '1'
local counter = tonumber(status) == STATUS_REJECTED and 'rejected' or 'completed'
use_channels(events_channel)

local ids, leases, state_keys = {}, {}, {}
for i = 6, with_result and 6 or #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  leases[#leases + 1] = ARGV[i + 1]
  state_keys[#state_keys + 1] = task_prefix .. ':' .. ARGV[i]
end

local function released_already(state_status)
  return state_status == 3 or state_status == 4
end

-- Which attempts own their working task; the deadlines in one read.
local deadlines = redis.call('ZMSCORE', working_key, unpack(ids))
local codes, released, released_keys, records, seen, holds = {}, {}, {}, {}, {}, {}
for i, id in ipairs(ids) do
  local state = redis.call('HMGET', state_keys[i], 'status', 'lease', 'unique')
  if not state[1] and call ~= '' and not deadlines[i] then
    -- No state: removed by a release without a result, perhaps this one.
    local gone = redis.call('GET', gone_prefix .. ':' .. id)
    if gone then
      state = {'3', gone}
    end
  end
  local where = attempt_of(deadlines[i], state, leases[i], call, released_already)
  if where == 'current' and not seen[id] then
    seen[id] = true
    codes[i] = OK
    released[#released + 1] = id
    released_keys[#released_keys + 1] = state_keys[i]
    holds[#holds + 1] = state[3]
    if leases[i] ~= '' then
      records[#records + 1] = lease_prefix .. ':' .. leases[i]
    end
  elseif where == 'ended' then
    codes[i] = OK
  elseif where == 'current' then
    codes[i] = NOT_WORKING  -- named twice in one batch: released by the first
  else
    codes[i] = where
  end
end
if #released == 0 then
  return reply(REPORT and codes[1] or codes)
end

redis.call('ZREM', working_key, unpack(released))
redis.call('HDEL', tasks_key, unpack(released))
-- The leases' records go (the dequeue's reply arrived: no retry of it will
-- come), and without a result the states too, in one command.
if not with_result then
  for _, state_key in ipairs(released_keys) do
    records[#records + 1] = state_key
  end
end
if #records > 0 then
  redis.call('DEL', unpack(records))
end
redis.call('HINCRBY', stats_key, 'released', #released)
room_freed(KEYS[8], KEYS[9], KEYS[10])
for i, id in ipairs(released) do
  hold_id(KEYS[11], id, holds[i])
end
redis.call('HINCRBY', stats_key, counter, #released)
if with_result then
  local id, state_key, result, ttl_ms = ids[1], state_keys[1], ARGV[8], ARGV[9]
  local now = us_text(clock_us(offset_us))
  redis.call('HSET', state_key, 'status', status, 'result', result, 'released', now, 'lease', call)
  redis.call('PEXPIRE', state_key, ttl_ms)
  publish(events_channel, state_key, id, 'released', now, nil, result)
else
  for _, id in ipairs(released) do
    redis.call('SET', gone_prefix .. ':' .. id, call, 'PX', RETRY_WINDOW_MS)
  end
  local channels = {events_channel}
  for _, state_key in ipairs(released_keys) do
    channels[#channels + 1] = task_channel(state_key)
  end
  learn_listeners(channels)
  for i, id in ipairs(released) do
    publish(events_channel, released_keys[i], id, 'removed', nil, status)  -- reads the clock only to publish
  end
end
return reply(REPORT and codes[1] or codes)
