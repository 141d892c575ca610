"""Flask's JSON responses encoded by orjson.

orjson encodes a ticket page ten times faster than the standard library (0.02 against 0.22 ms for
20 tickets; `make bench`). The output keeps what clients and ETags rely on: keys sorted (equal
bodies hash equal), compact unless debugging. It differs in what no client should notice: text is
UTF-8 rather than `\\uXXXX` escapes, and NaN is `null`. Anything orjson refuses (an integer beyond
64 bits echoed back in an error's details, say) goes through the standard library instead.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider

OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


class OrjsonProvider(DefaultJSONProvider):
    """DefaultJSONProvider with orjson for dumps (loads stays the standard library's)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        option = OPTIONS | (orjson.OPT_INDENT_2 if kwargs.get("indent") else 0)
        try:
            return orjson.dumps(obj, default=self.default, option=option).decode()
        except orjson.JSONEncodeError:
            return super().dumps(obj, **kwargs)
