--[[
release_take: a release (of one task with a result, or of several without)
and a dequeue, in one call: what a worker does when handlers are done and
their slots are free again, in one round trip instead of two. The bodies of release.lua and dequeue.lua run here as
the functions release_step and take_step (the client builds this script
from them), each with its own KEYS and ARGV, in that order; each validates
and reads before it writes, and neither can fail on its input.

KEYS[1..11] the keys of release.lua
KEYS[12]    wake and KEYS[13] rate, the keys of dequeue.lua that release.lua has not
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] how many of the following are release.lua's (from its ARGV[3]);
        each of the rest is the lease of a dequeue of one task
Returns {release codes, {dequeue reply...}} (see those scripts): a reply
for each lease, up to the first dequeue that found nothing.
]]
local split = tonumber(ARGV[3])
local release_keys = {}
for i = 1, 11 do
  release_keys[i] = KEYS[i]
end
-- pending, working, tasks, stats, events, wake, ready, task, lease, config, rate
local take_keys = {KEYS[9], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[12], KEYS[10], KEYS[5], KEYS[6], KEYS[8], KEYS[13]}
local release_args = {ARGV[1], '0'}
for i = 4, 3 + split do
  release_args[#release_args + 1] = ARGV[i]
end

local report = REPORT
REPORT = false  -- the steps return plain values; this call's reply says what was refused
local codes = release_step(release_keys, release_args)
-- One task per lease, so that each can be given back alone.
local taken = {}
for i = 4 + split, #ARGV do
  local one = take_step(take_keys, {ARGV[1], '0', '1', ARGV[i], '0'})
  if #one == 0 or #one == 1 then  -- none left, or the rate limit says wait
    break
  end
  taken[#taken + 1] = one
end
REPORT = report
return reply({codes, taken})
