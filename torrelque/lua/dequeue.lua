--[[
dequeue: opens an attempt of up to `limit` pending tasks, under one lease:
moves their ids to `working` and returns their payloads.

Ids leave `pending` only here, so no id is ever between two places. A
consumer with nothing to take blocks on the `ready` marker (BLPOP), outside
any script, and calls this again when it gets it; losing that marker (a lost
reply, a cancelled wait) loses no task.

The lease record makes the call idempotent: when it exists, this call ran
before (its reply was lost and the client sent it again) and it returns the
same tasks, those still working under this lease; or the call was given
back (giveback.lua), and it takes nothing.

KEYS[1] pending   list of ids waiting (pushed left, popped right)
KEYS[2] working   sorted set: id -> stale deadline (microseconds)
KEYS[3] tasks     hash: id -> serialised payload
KEYS[4] stats     hash of the queue's counters
KEYS[5] events    queue-wide event channel
KEYS[6] wake      channel that wakes a sleeping scheduled sweep
KEYS[7] ready     list: the wake-up marker of blocked consumers
KEYS[8] task      prefix of task state keys: "<prefix>:<id>"
KEYS[9] lease     prefix of lease records: "<prefix>:<token>"
KEYS[10] config   hash of the queue's settings (working_limit, rate_limit, rate_period)
KEYS[11] rate     prefix of the rate limit's counters: "<prefix>:<window>"
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] limit: the most tasks to take
ARGV[4] lease token of this call
ARGV[5] '1' when the caller was woken by the wake-up marker (it took it:
        this call sets it again for the next consumer when ids are left)
Returns a flat list, two elements per task (a reply's elements cost the
client more than its bytes): "<id> <dequeue count> <timeout> <max attempts>"
(the timeout in seconds, '-' for the default; '-' for no max attempts) and
the payload, for each task taken;
"<id>" and '' for each id that was pending but had no payload (dropped);
or, when the rate limit allows no dequeue now, one element: '~' and the
microseconds until it does.
]]
local pending_key, working_key, tasks_key, stats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local events_channel, wake_channel, ready_key, task_prefix = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local record_key = KEYS[9] .. ':' .. ARGV[4]
local offset_us, limit, lease, woken = ARGV[1], tonumber(ARGV[3]), ARGV[4], ARGV[5] == '1'
use_channels(events_channel)

local record = redis.call('GET', record_key)
if record then
  local out = {}
  for _, id in ipairs(cjson.decode(record)) do
    local state_key = task_prefix .. ':' .. id
    local state = redis.call('HMGET', state_key, 'lease', 'dequeues', 'timeout', 'max_attempts')
    local payload = redis.call('HGET', tasks_key, id)
    if state[1] == lease and payload and redis.call('ZSCORE', working_key, id) then
      out[#out + 1] = id .. ' ' .. state[2] .. ' ' .. (state[3] or '-') .. ' ' .. (state[4] or '-')
      out[#out + 1] = payload
    end
  end
  return reply(out)
end

local settings = redis.call('HMGET', KEYS[10], 'working_limit', 'rate_limit', 'rate_period')
if settings[1] then
  local room = tonumber(settings[1]) - redis.call('ZCARD', working_key)
  if room <= 0 then
    redis.call('DEL', ready_key)  -- woken again when room is freed (room_freed)
    return reply({})
  end
  limit = math.min(limit, room)
end
local now_us = clock_us(offset_us)
local now = us_text(now_us)
-- The rate limit: at most rate_limit dequeues in each window of
-- rate_period microseconds (windows are aligned on the server's clock).
local rate_key = nil
if settings[2] then
  local period_us = tonumber(settings[3])
  local window = math.floor(now_us / period_us)
  rate_key = KEYS[11] .. ':' .. window
  local allowed = tonumber(settings[2]) - (tonumber(redis.call('GET', rate_key)) or 0)
  if allowed <= 0 then
    return reply({'~' .. us_text((window + 1) * period_us - now_us)})
  end
  limit = math.min(limit, allowed)
end

local ids = redis.call('RPOP', pending_key, limit)
if not ids then
  redis.call('DEL', ready_key)  -- a marker left by a consumer that took the last ids
  return reply({})
end

local payloads = redis.call('HMGET', tasks_key, unpack(ids))
local found, out, earliest_us = {}, {}, nil
for i, id in ipairs(ids) do
  local payload = payloads[i]
  if payload then
    local state_key = task_prefix .. ':' .. id
    local state = redis.call('HMGET', state_key, 'timeout', 'dequeues', 'max_attempts')
    local deadline_us = now_us + math.floor((tonumber(state[1]) or DEFAULT_TIMEOUT) * 1000000)
    if earliest_us == nil or deadline_us < earliest_us then
      earliest_us = deadline_us
    end
    found[#found + 1] = {
      id, payload, state_key, deadline_us, (tonumber(state[2]) or 0) + 1, (state[1] or '-') .. ' ' .. (state[3] or '-'),
    }
  else
    out[#out + 1] = id
    out[#out + 1] = ''
  end
end
if woken then
  mark_ready(pending_key, ready_key)
end
if #found == 0 then
  return reply(out)
end

wake_if_earliest(working_key, wake_channel, earliest_us, now_us)
local scores, taken, channels = {}, {}, {events_channel}
for _, task in ipairs(found) do
  local id, payload, state_key, deadline_us, dequeues = task[1], task[2], task[3], task[4], task[5]
  scores[#scores + 1] = us_text(deadline_us)
  scores[#scores + 1] = id
  redis.call('HSET', state_key, 'status', STATUS_WORKING, 'dequeued', now, 'dequeues', dequeues, 'lease', lease)
  redis.call('HDEL', state_key, 'progress')  -- a new attempt starts from nothing
  channels[#channels + 1] = task_channel(state_key)
  taken[#taken + 1] = id
  out[#out + 1] = id .. ' ' .. dequeues .. ' ' .. task[6]
  out[#out + 1] = payload
end
redis.call('ZADD', working_key, unpack(scores))
redis.call('SET', record_key, cjson.encode(taken), 'PX', RETRY_WINDOW_MS)
redis.call('HINCRBY', stats_key, 'dequeued', #found)
if rate_key then
  redis.call('INCRBY', rate_key, #found)
  redis.call('PEXPIRE', rate_key, math.floor(tonumber(settings[3]) / 1000) + 1000)
end
learn_listeners(channels)
for _, task in ipairs(found) do
  publish(events_channel, task[3], task[1], 'dequeued', now)
end
return reply(out)
