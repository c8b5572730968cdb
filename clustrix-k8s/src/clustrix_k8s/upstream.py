"""Calls that wait for others: their values go into the call before its Job is created.

A pod cannot read another job's result file (results come back through pod logs into the
client's job directories), so a call whose arguments are unfinished futures is held by the
client until they completed; then its staged payload gets their values, read from their
directories here and checked with their keys exactly as the runner would on a cluster, and
is signed again with the call's own key.
"""

from __future__ import annotations

from clustrix import runner
from clustrix.transport import Transport


def payload_with_values(transport: Transport, directory: str) -> bytes:
    """The call staged in ``directory``, its upstream futures replaced by their values."""
    key = bytes.fromhex(transport.read_file(f"{directory}/{runner.KEY_FILE}").decode())
    header, body = runner.unpack(transport.read_file(f"{directory}/{runner.PAYLOAD_FILE}"), key, "call")
    call = runner.loads(header, body)
    runner.fill_upstream_values(call, transport.read_file)
    return runner.pack("call", call, key, header["serializer"], header["clustrix"])
