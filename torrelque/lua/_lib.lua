--[[
Shared helpers. This text is prepended to every other script of this folder
when it is registered, so each script can use these locals.

Common arguments: ARGV[1] is the clock seam offset (integer microseconds, 0
outside tests) and ARGV[2] starts with '1' when the caller wants to know
whether the server refused to publish an event: the script then returns
{'events refused', value} instead of value when it did (calls added to a
caller's pipeline pass '0', so that the pipeline's results always hold the
plain value). An 's' after it says that events go by sharded pub/sub
(SPUBLISH, on a cluster: the queue's channels are in its keys' slot).

Time: every script reads the Redis server's clock (TIME), shifted by the
offset. Every time stored (state fields, sorted set scores) is an integer
number of microseconds since the Unix epoch.

Order: each script reads and checks everything it needs before its first
write, and nothing after that write can fail on its input (the client bounds
every number), so a script is done entirely or not at all. Publishing uses
pcall: a user without channel permissions still moves tasks.

Full memory (maxmemory with noeviction): Redis refuses a script's first
write when it would grow memory, and lets the rest of a script that has
written go on. So a transition that frees or keeps memory starts with a
write that does not grow it (ZREM, RPOP): consumers drain a full queue,
and only enqueues are refused, whole.

Fields at their default are not stored: counts at 0, and `timeout` when it
is DEFAULT_TIMEOUT (which keeps a pending task's state small).

Leases: each dequeue call draws a lease token; the tasks it takes store it
in their `lease` state field, and it names the lease record
"<lease prefix>:<token>", a JSON list of the ids the call took, kept for
RETRY_WINDOW_MS (or until one of them is released or requeued), so that a
retry of the same call returns the same tasks and a call given back takes
nothing. Release, requeue and touch act on the attempt whose lease they
name ('' names whichever attempt is current). A release or requeue call
also draws a token of its own, which replaces the lease in the state when
it ends the attempt: the same call sent again is recognised as done, while
another call of the same attempt is refused.

Cluster: every key is passed in KEYS, or built here from a prefix passed in
KEYS ("<task prefix>:<id>" and the like): all of them begin with the
queue's hash tag, so they are in the declared keys' slot, on this node.

Events: each transition is published as one JSON object on the task's own
channel (named like its state key, with the suffix of the events channel:
'@<db>' beyond database 0, for pub/sub spans the server's databases) and on
the queue's events channel. The state fields of the task are copied into
it verbatim; they hold numbers that these scripts wrote, and `progress`,
JSON that the client checked (it holds no newline). A released task's
result follows the JSON on the task channel after a newline, as the
serialiser's raw bytes.
]]

-- Return codes shared with torrelque/_scripts.py (Outcome).
local OK, UNKNOWN, NOT_WORKING, LOST, DUPLICATE = 1, 0, -1, -3, -4

local STATUS_PENDING, STATUS_WORKING, STATUS_DELAYED = 0, 1, 2
local STATUS_REJECTED, STATUS_CANCELLED = 4, 5

-- Seconds a task has once dequeued when its state stores no `timeout`.
local DEFAULT_TIMEOUT = 300

-- How long a call's effect is remembered so that its retry is recognised:
-- lease records, and the tombstone "<gone prefix>:<id>" of a task released
-- without a result (the token of the release call). Matches RETRY_WINDOW in
-- torrelque/_scripts.py.
local RETRY_WINDOW_MS = 60000

local REPORT = string.sub(ARGV[2], 1, 1) == '1'
local SHARDED = string.sub(ARGV[2], 2, 2) == 's'
local PUBLISH = SHARDED and 'SPUBLISH' or 'PUBLISH'

-- State fields that events carry, in this order.
local STATE_FIELDS = {
  'status', 'timeout', 'enqueued', 'dequeues', 'requeues',
  'dequeued', 'requeued', 'released', 'progress',
}

-- A task that ends keeps its caller-given id taken for the `unique` of its
-- state (milliseconds, set by an enqueue with unique_for), under the key
-- "<unique prefix>:<id>".
local function hold_id(unique_prefix, id, unique_ms)
  if unique_ms then
    redis.call('SET', unique_prefix .. ':' .. id, '1', 'PX', unique_ms)
  end
end

local function clock_us(offset_us)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(offset_us)
end

-- Integer microseconds as the exact text Redis stores (a Lua number given
-- to redis.call would be rounded to 14 digits).
local function us_text(us)
  return string.format('%d', us)
end

-- JSON of one transition. The state fields come from the hash when `status`
-- is nil; a number `status` is used instead of the hash (which is gone), and
-- `false` leaves both out (the task is unknown).
local function event_json(state_key, id, event, time_text, status, has_result)
  local parts = {'{"id":', cjson.encode(id), ',"event":"', event, '","time":', time_text}
  if status then
    parts[#parts + 1] = ',"status":' .. status
  elseif status == nil then
    local values = redis.call('HMGET', state_key, unpack(STATE_FIELDS))
    for i, field in ipairs(STATE_FIELDS) do
      if values[i] then
        parts[#parts + 1] = ',"' .. field .. '":' .. values[i]
      end
    end
  end
  if has_result then
    parts[#parts + 1] = ',"result":true'
  end
  parts[#parts + 1] = '}'
  return table.concat(parts)
end

-- Set when the server refused a PUBLISH of this call (an ACL user without
-- channel permissions); the transition goes on without the event.
local events_refused = false

local function send(channel, message)
  local sent = redis.pcall(PUBLISH, channel, message)
  if type(sent) == 'table' and sent.err then
    events_refused = true
  end
end

-- The script's reply: `value`, marked when an event was refused and the
-- caller asked (ARGV[2]). No plain reply starts with this text.
local function reply(value)
  if REPORT and events_refused then
    return {'events refused', value}
  end
  return value
end

-- Publishing to nobody is skipped, and so are the reads that build the
-- message: a channel is published to when it has subscribers, or when any
-- pattern subscription exists on the server (one may match it; sharded
-- channels have no patterns, and their subscribers are on this node: the
-- library subscribes on the master of the slot). What is learnt is kept
-- for the rest of the call: subscriptions cannot change while a script runs.
local any_pattern = nil
local subscribed = {}

-- The suffix that scopes channels to the client's database: what the
-- events channel (from KEYS) ends with. Each script that publishes calls
-- use_channels() with it.
local channel_suffix = ''

local function use_channels(events_channel)
  channel_suffix = string.match(events_channel, '@%d+$') or ''
end

local function task_channel(state_key)
  return state_key .. channel_suffix
end

-- Looks up, in one PUBSUB NUMSUB, which of `channels` have subscribers.
local function learn_listeners(channels)
  if any_pattern == nil then
    any_pattern = not SHARDED and redis.call('PUBSUB', 'NUMPAT') > 0
  end
  if any_pattern or #channels == 0 then
    return
  end
  local counts = redis.pcall('PUBSUB', SHARDED and 'SHARDNUMSUB' or 'NUMSUB', unpack(channels))
  if counts.err then
    -- A server without sharded pub/sub (before 7.0): publishing is tried,
    -- and refused, which the caller hears of.
    any_pattern = true
    return
  end
  for i = 1, #counts, 2 do
    subscribed[counts[i]] = counts[i + 1] > 0
  end
end

local function listened(channel)
  if subscribed[channel] == nil then
    learn_listeners({channel})
  end
  return any_pattern or subscribed[channel]
end

-- Publishes a transition of task `id` (whose state is `state_key`) on its
-- own channel and on `events_channel`, to whichever has listeners. Scripts
-- that move many tasks call learn_listeners() first with all their
-- channels. A nil `time_text` reads the clock (offset by ARGV[1]) only if a
-- message is sent.
local function publish(events_channel, state_key, id, event, time_text, status, result)
  local channel = task_channel(state_key)
  if subscribed[events_channel] == nil and subscribed[channel] == nil then
    learn_listeners({events_channel, channel})
  end
  local task_listened = listened(channel)
  local events_listened = listened(events_channel)
  if not (task_listened or events_listened) then
    return
  end
  local message = event_json(state_key, id, event, time_text or us_text(clock_us(ARGV[1])), status, result ~= nil)
  if task_listened then
    if result ~= nil then
      send(channel, message .. '\n' .. result)
    else
      send(channel, message)
    end
  end
  if events_listened then
    send(events_channel, message)
  end
end

-- Takes working task `id` out of `working` and `tasks` for good, as
-- REJECTED at `now`, keeping its payload in its state (`payload`) for an
-- operator, and `result` unless it is ''; returns the result to publish.
-- What a burial and a quarantine share. Its first write is the ZREM, which
-- a full server allows, so that none after it is refused.
local function reject_keeping_payload(working_key, tasks_key, state_key, id, now, result)
  local payload = redis.call('HGET', tasks_key, id)
  redis.call('ZREM', working_key, id)
  redis.call('HDEL', tasks_key, id)
  redis.call('HSET', state_key, 'status', STATUS_REJECTED, 'released', now)
  if payload then
    redis.call('HSET', state_key, 'payload', payload)
  end
  if result == '' then
    return nil
  end
  redis.call('HSET', state_key, 'result', result)
  return result
end

-- Ends task `id`, out of `pending`, `delayed` and `working` already, as
-- CANCELLED: its payload goes, its state is kept for `ttl_ms`, its caller's
-- id is held for `unique_ms` (if any), and the event is published.
local function end_cancelled(tasks_key, unique_prefix, events_channel, state_key, id, ttl_ms, unique_ms, now)
  redis.call('HDEL', tasks_key, id)
  redis.call('HDEL', state_key, 'lease', 'cancel')
  redis.call('HSET', state_key, 'status', STATUS_CANCELLED, 'released', now)
  redis.call('PEXPIRE', state_key, ttl_ms)
  hold_id(unique_prefix, id, unique_ms)
  publish(events_channel, state_key, id, 'cancelled', now)
end

-- Where the attempt named by `lease` stands, from `deadline` (the task's
-- score in `working`, or false) and `state` ({status, lease} of its state
-- hash). Returns 'current' when it owns the working task ('' names whichever
-- attempt is current), 'ended' when the call `call` already ended the task
-- in a status that `ended_ok(status)` accepts (this is that call sent
-- again), else the refusal code.
local function attempt_of(deadline, state, lease, call, ended_ok)
  local status, owner = tonumber(state[1]), state[2]
  if deadline and (lease == '' or lease == owner) then
    return 'current'
  end
  if call ~= '' and owner == call and status and ended_ok(status) then
    return 'ended'
  end
  if deadline then
    return LOST
  end
  if status then
    return NOT_WORKING
  end
  return UNKNOWN
end

-- Tells a scheduled sweep, which sleeps until the earliest score of
-- `working` or `delayed`, that a new earlier score is coming (call before
-- adding it). The message is the number of seconds from now.
local function wake_if_earliest(zset_key, wake_channel, score_us, now_us)
  local first = redis.call('ZRANGE', zset_key, 0, 0, 'WITHSCORES')
  if first[2] == nil or tonumber(first[2]) > score_us then
    send(wake_channel, string.format('%.6f', math.max(score_us - now_us, 0) / 1000000))
  end
end

-- The wake-up marker of blocked consumers: one element in `ready` while
-- `pending` has ids. A blocked dequeue pops it (BLPOP) and then takes tasks
-- in its script, which sets it again for the next consumer when ids are
-- left (mark_ready). Every push to `pending` sets it (arm_ready).
local function arm_ready(ready_key)
  if redis.call('LLEN', ready_key) == 0 then
    -- pcall: when this is a script's first write on a full server, the
    -- marker is not set (consumers find the ids when their wait ends).
    redis.pcall('LPUSH', ready_key, '1')
  end
end

local function mark_ready(pending_key, ready_key)
  if redis.call('LLEN', pending_key) == 0 then
    redis.call('DEL', ready_key)
  else
    arm_ready(ready_key)
  end
end

-- The queue-wide working limit: field `working_limit` of the config hash,
-- the most tasks in `working` at once. A dequeue that finds no room takes
-- the marker away, so that blocked consumers sleep rather than poll; each
-- transition that frees room (a task leaving `working` other than into
-- `pending`, which sets the marker itself) sets it again.
local function room_freed(config_key, pending_key, ready_key)
  if redis.call('HEXISTS', config_key, 'working_limit') == 1 then
    mark_ready(pending_key, ready_key)
  end
end

-- Puts `id` at the tail of `pending`, or in `delayed` until `delay_us` from
-- now when that is positive. Returns the task's new status.
local function enter_queue(pending_key, delayed_key, ready_key, stats_key, wake_channel, id, now_us, delay_us)
  if delay_us > 0 then
    local due_us = now_us + delay_us
    wake_if_earliest(delayed_key, wake_channel, due_us, now_us)
    redis.call('ZADD', delayed_key, us_text(due_us), id)
    redis.call('HINCRBY', stats_key, 'delayed', 1)
    return STATUS_DELAYED
  end
  redis.call('LPUSH', pending_key, id)
  arm_ready(ready_key)
  return STATUS_PENDING
end
