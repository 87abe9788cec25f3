"""Runs commands through redis-py's cluster client, for sink_cluster.rs.

Usage: redis_py_cluster.py PORT  (any node of the cluster)
Reads one JSON object a line on stdin: {"args": [...]} is sent as redis-py routes it
(by the key it finds in the server's COMMAND table); {"args": [...], "node_of": KEY}
goes to the node serving KEY's slot, as docs/cluster.md tells redis-py users to send a
named sink's commands. Prints each reply as a JSON line; stops at the first error.
"""
import json
import sys

from redis.cluster import RedisCluster

cluster = RedisCluster(host="127.0.0.1", port=int(sys.argv[1]), decode_responses=True)
for line in sys.stdin:
    request = json.loads(line)
    routing = {}
    if "node_of" in request:
        routing["target_nodes"] = cluster.get_node_from_key(request["node_of"])
    reply = cluster.execute_command(*request["args"], **routing)
    print(json.dumps(reply, default=str), flush=True)
