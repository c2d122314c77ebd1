--[[
release_take: a release of one task and a dequeue, in one call: what a
worker does when a handler is done and its slot is free again, in one round
trip instead of two. The bodies of release.lua and dequeue.lua run here as
the functions release_step and take_step (the client builds this script
from them), each with its own KEYS and ARGV, in that order; each validates
and reads before it writes, and neither can fail on its input.

KEYS[1..10]  the keys of release.lua
KEYS[11..20] the keys of dequeue.lua
ARGV[1] clock offset (integer microseconds)
ARGV[2] '1': report refused events (see _lib.lua)
ARGV[3] how many of the following are release.lua's (from its ARGV[3]);
        the rest are dequeue.lua's (from its ARGV[3])
Returns {release code, dequeue reply} (see those scripts).
]]
local split = tonumber(ARGV[3])
local release_keys, take_keys, release_args, take_args = {}, {}, {ARGV[1], '0'}, {ARGV[1], '0'}
for i = 1, 10 do
  release_keys[i] = KEYS[i]
  take_keys[i] = KEYS[10 + i]
end
for i = 4, 3 + split do
  release_args[#release_args + 1] = ARGV[i]
end
for i = 4 + split, #ARGV do
  take_args[#take_args + 1] = ARGV[i]
end

local report = REPORT
REPORT = false  -- the steps return plain values; this call's reply says what was refused
local codes = release_step(release_keys, release_args)
local taken = take_step(take_keys, take_args)
REPORT = report
return reply({codes[1], taken})
