"""The Redis store's Lua scripts: each one write that lands whole or not at all.

A turn's commit (:data:`COMMIT`) writes the conversation (compare-and-set on its version), the
MessageSid with its replies, the opt-out with its consent ledger entry, the transcript, the deadline
index, who is where, the flow runs (``redis_results.APPLY_RUNS``) and the replies owed
(``redis_owed.OWE``), then ends the turn's hold on the sender's lock (``redis_lock.py``): one trip.
Scripts run by SHA1 (``redis_wire.Script``, or redis-py's ``register_script``), so their text is
sent once per connection, not per call.
"""

from __future__ import annotations

from bot.store.redis_owed import OWE
from bot.store.redis_results import APPLY_RUNS

# Sets ('1') or clears ('0') the opt-out (and its entry in the list of opt-outs, by time) and appends
# the ledger entry, only when the status changes (returns 1; 0: unchanged, nothing written). A member
# is a sequence number and the change as JSON.
CONSENT = """
local function change_consent(opt_out, history, ledger, sequence, flag, at, entry, opted_out)
  if (flag == '1') == (redis.call('EXISTS', opt_out) == 1) then return 0 end
  local number = cjson.decode(entry)['number']
  if flag == '1' then
    redis.call('SET', opt_out, at)
    redis.call('ZADD', opted_out, at, number)
  else
    redis.call('DEL', opt_out)
    redis.call('ZREM', opted_out, number)
  end
  local member = string.format('%015d', redis.call('INCR', sequence)) .. ' ' .. entry
  redis.call('ZADD', history, at, member)
  redis.call('ZADD', ledger, at, member)
  return 1
end
"""

# KEYS: opt-out, the number's ledger, all ledgers, ledger sequence, opt-outs; ARGV: 1/0, time, entry JSON
SET_CONSENT = CONSENT + """
return change_consent(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], KEYS[5])
"""

# Who is where (the console's counts): a conversation in a flow is a member of its state's sorted set
# (at_state), scored by when the person last wrote; the conversation's hash names that set in 'at'
# (empty: in no flow; the commit writes it with the data), so the next write or a purge knows which
# set to leave. A state's set is listed in its flow's states, and the flow in the flows, when the
# set begins (its first member: every set that exists was listed as it began, by this, by an earlier
# release, or by migration 1; the lists never shrink). A conversation last written before these
# sets existed has no 'at': it joins them at its next turn.
PLACE = """
local function place(sender, before, at_key, states, state, flows, flow, score)
  if before and before ~= '' and before ~= at_key then redis.call('ZREM', before, sender) end
  if at_key ~= '' then
    if redis.call('ZADD', at_key, score, sender) == 1 and redis.call('ZCARD', at_key) == 1 then
      redis.call('SADD', states, state)
      redis.call('SADD', flows, flow)
    end
  end
end
"""

# KEYS: conversation, message (the MessageSid's mark), reply, transcript, sender's message set, and
#       the turn's lock when the commit ends its hold
# ARGV: key prefix, sender, message sid, expected version ('-': conversation unchanged, not written),
#       conversation JSON, flow ('' in none), state, when the person last wrote, replies JSON, dedup
#       ttl ms, retention ttl ms, deadline (time / clear / -), the lock's token ('-': keep the lock);
#       then the consent change: '-', or opt-out (1/0), the opt-out key, the number's ledger, all
#       ledgers, ledger sequence, opt-outs, its time, its ledger entry; then how many flow runs the
#       turn updates and their updates (redis_results.APPLY_RUNS); then the replies owed: '-', or
#       their JSON (redis_owed.py), their claim's end, the owed records and claims keys; then the
#       transcript lines.
# Keys the script builds from the prefix (as redis_keys.KeyBuilder names them: keep the two alike;
# the contract tests read them back through the store): 'deadlines', 'at:FLOW:STATE',
# 'states:FLOW', 'flows', and the results' keys (redis_results.py). A script's argument costs Redis
# about a µs (its parse, a string for Lua), so what most turns do not write is not named.
# Returns committed, or (nothing written) duplicate or conflict. The MessageSid's SET NX is the
# duplicate check and the first write; the consent and owed helpers are defined only for a turn that
# uses them (a Lua closure made per call costs Redis about half a µs).
COMMIT = PLACE + APPLY_RUNS + """
local p, sender, sid = ARGV[1], ARGV[2], ARGV[3]
local stored = nil
if ARGV[4] ~= '-' then
  stored = redis.call('HMGET', KEYS[1], 'version', 'at')
  if tonumber(stored[1] or '0') ~= tonumber(ARGV[4]) then
    if redis.call('EXISTS', KEYS[2]) == 1 then return 'duplicate' end
    return 'conflict'
  end
end
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[10]) then return 'duplicate' end
if stored then
  local flow, state = ARGV[6], ARGV[7]
  local at_key = ''
  if flow ~= '' and state ~= '' then at_key = p .. 'at:' .. flow .. ':' .. state end
  redis.call('HSET', KEYS[1], 'data', ARGV[5], 'version', tonumber(stored[1] or '0') + 1, 'at', at_key)
  place(sender, stored[2], at_key, p .. 'states:' .. flow, state, p .. 'flows', flow, ARGV[8])
  redis.call('PEXPIRE', KEYS[1], ARGV[11])
end
redis.call('SET', KEYS[3], ARGV[9], 'PX', ARGV[11])
redis.call('SADD', KEYS[5], sid)
redis.call('PEXPIRE', KEYS[5], ARGV[10])
if ARGV[12] == 'clear' then redis.call('ZREM', p .. 'deadlines', sender)
elseif ARGV[12] ~= '-' then redis.call('ZADD', p .. 'deadlines', ARGV[12], sender) end
local i = 15
if ARGV[14] ~= '-' then
""" + CONSENT + """
  change_consent(ARGV[15], ARGV[16], ARGV[17], ARGV[18], ARGV[14], ARGV[20], ARGV[21], ARGV[19])
  i = 22
end
i = apply_runs(i + 1, tonumber(ARGV[i]), p, sender, ARGV[11])
if ARGV[i] ~= '-' then
""" + OWE + """
  owe(ARGV[i + 2], ARGV[i + 3], sid, ARGV[i], ARGV[i + 1])
  i = i + 4
else
  i = i + 1
end
if #ARGV >= i then redis.call('RPUSH', KEYS[4], unpack(ARGV, i)) end
redis.call('PEXPIRE', KEYS[4], ARGV[11])
if KEYS[6] and redis.call('GET', KEYS[6]) == ARGV[13] then redis.call('DEL', KEYS[6]) end
return 'committed'
"""

# KEYS: a turn's lock; ARGV: its token. Deleted only while it is still this holder's (one whose TTL
# ran out may be another process's by now).
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: a turn's lock; ARGV: its token, TTL ms. Extends it only while it is still this holder's.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: conversation, transcript, sender's message set, deadlines; ARGV: reply key prefix, sender
PURGE = """
local at = redis.call('HGET', KEYS[1], 'at')
if at and at ~= '' then redis.call('ZREM', at, ARGV[2]) end
local conversations = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[4], ARGV[2])
local lines = redis.call('LLEN', KEYS[2])
redis.call('DEL', KEYS[2])
local blanked = 0
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  blanked = blanked + redis.call('DEL', ARGV[1] .. sid)
end
return {conversations, lines, blanked}
"""

# KEYS: deadlines; ARGV: sender, deadline. Removes the entry only while it still says that deadline.
DROP_DEADLINE = """
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""

# KEYS: entries hash, written-at sorted set; ARGV: name, entry JSON, written at, forget before. Process
# statuses and broadcast progress alike: insert or replace the entry, drop those not written since.
RECORD_STATUS = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4])
if #old > 0 then
  redis.call('HDEL', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
end
return #old
"""
