"""The legacy SIPE log server: the stdlib socket-logging protocol, on the delivery engine.

Importing this package registers the START_STOP level (35) with
:func:`logging.addLevelName`, unless the program already named it.
"""

from ._encode import PICKLE_PROTOCOL, START_STOP, SipeEncoder, start_stop_message
from ._frame import frame, plain
from ._sink import DEFAULT_PORT, SipeHandler, SipeSink, parse_sipe_url, sipe_spool_dir
from ._transport import SipeTransport

__all__ = [
    "DEFAULT_PORT",
    "PICKLE_PROTOCOL",
    "START_STOP",
    "SipeEncoder",
    "SipeHandler",
    "SipeSink",
    "SipeTransport",
    "frame",
    "parse_sipe_url",
    "plain",
    "sipe_spool_dir",
    "start_stop_message",
]
