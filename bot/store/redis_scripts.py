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
# set to leave. The flow's states and the flows are listed when a conversation arrives at a state
# (a conversation last written before these sets existed has no 'at': it joins them at its next turn).
PLACE = """
local function place(sender, before, at_key, states, state, flows, flow, score)
  if before and before ~= '' and before ~= at_key then redis.call('ZREM', before, sender) end
  if at_key ~= '' then
    redis.call('ZADD', at_key, score, sender)
    if before ~= at_key then
      redis.call('SADD', states, state)
      redis.call('SADD', flows, flow)
    end
  end
end
"""

# KEYS: conversation, message, opt-out, transcript, sender's message set, reply, deadlines, sender,
#       the number's ledger, all ledgers, ledger sequence, opt-outs, owed records, their claims, the
#       turn's lock
# ARGV: expected version ('-': conversation unchanged, not written), conversation JSON, replies JSON,
#       dedup ttl ms, opt-out (1/0/-), retention ttl ms, now, message sid, deadline (time / clear / -),
#       consent change time, its ledger entry, where it is (at_state key or ''), its flow's states key,
#       state, the counted flows key, flow, when the person last wrote, the turn's flow runs (JSON,
#       redis_results.py; '-': none), its owed replies (JSON, redis_owed.py; '-': none) and their
#       claim's end, the lock's token ('-': keep the lock), transcript lines...
# Returns committed, or (nothing written) duplicate or conflict.
COMMIT = CONSENT + PLACE + APPLY_RUNS + OWE + """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'duplicate' end
if ARGV[1] ~= '-' then
  local stored = redis.call('HMGET', KEYS[1], 'version', 'at')
  local version = tonumber(stored[1] or '0')
  if version ~= tonumber(ARGV[1]) then return 'conflict' end
  redis.call('HSET', KEYS[1], 'data', ARGV[2], 'version', version + 1, 'at', ARGV[12])
  place(KEYS[8], stored[2], ARGV[12], ARGV[13], ARGV[14], ARGV[15], ARGV[16], ARGV[17])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
redis.call('SET', KEYS[6], ARGV[3], 'PX', ARGV[6])
redis.call('SADD', KEYS[5], ARGV[8])
redis.call('PEXPIRE', KEYS[5], ARGV[4])
if ARGV[5] ~= '-' then change_consent(KEYS[3], KEYS[9], KEYS[10], KEYS[11], ARGV[5], ARGV[10], ARGV[11], KEYS[12]) end
if ARGV[9] == 'clear' then redis.call('ZREM', KEYS[7], KEYS[8])
elseif ARGV[9] ~= '-' then redis.call('ZADD', KEYS[7], ARGV[9], KEYS[8]) end
if ARGV[18] ~= '-' then apply_runs(ARGV[18], KEYS[8], ARGV[6]) end
if ARGV[19] ~= '-' then owe(KEYS[13], KEYS[14], ARGV[8], ARGV[19], ARGV[20]) end
if #ARGV > 21 then redis.call('RPUSH', KEYS[4], unpack(ARGV, 22)) end
redis.call('PEXPIRE', KEYS[4], ARGV[6])
if ARGV[21] ~= '-' and redis.call('GET', KEYS[15]) == ARGV[21] then redis.call('DEL', KEYS[15]) end
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
