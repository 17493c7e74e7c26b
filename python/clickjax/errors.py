"""Exceptions raised by clickjax.

Parse errors carry the location of the bad input as attributes, so that a caller can report or skip
it without parsing the message:

- `ParseError`: `path`, `lineno` (physical line, 1-based), `field` and `text` (the offending text).
- `CorruptInputError`: `path`, `offset` (compressed byte offset where reading failed) and `lineno`
  (the last complete line).

Both derive from `ClickjaxError`. The classes are defined by the native extension, so that the Rust
readers raise exactly these types.
"""

from clickjax._native import ClickjaxError
from clickjax._native import CorruptInputError
from clickjax._native import ParseError

__all__ = ["ClickjaxError", "CorruptInputError", "ParseError"]
