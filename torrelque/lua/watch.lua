--[[
watch: publishes the current state of each given task on its own channel,
as a "snapshot" event (with the result after a newline when it has one), or
a "missing" event when the task is unknown. A watch subscribes to the task's channel first
and then calls this, so it reads the state in the same ordered stream as
the transitions and misses none between the two.

KEYS[1] task      prefix of task state keys: "<prefix>:<id>"
KEYS[2] events    queue-wide event channel (whose suffix the task channels share)
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3...] task ids
Returns one entry per id: 1 when the task is known, 0 when it is not.
]]
local task_prefix = KEYS[1]
local offset_us = ARGV[1]
use_channels(KEYS[2])

local now = us_text(clock_us(offset_us))
local found = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local state_key = task_prefix .. ':' .. id
  local state = redis.call('HMGET', state_key, 'status', 'result')
  if state[1] then
    local result = state[2]
    local message = event_json(state_key, id, 'snapshot', now, nil, result ~= false)
    if result then
      message = message .. '\n' .. result
    end
    send(task_channel(state_key), message)
    found[#found + 1] = 1
  else
    send(task_channel(state_key), event_json(state_key, id, 'missing', now, false))
    found[#found + 1] = 0
  end
end
return reply(found)
