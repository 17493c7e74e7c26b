"""Progress bars of the command line, drawn with tqdm on standard error.

Bars are shown only when standard error is a terminal and the user did not pass `--quiet`, so
logs written to files and pipes stay free of control characters.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

__all__ = ["Progress"]

T = TypeVar("T")


class Progress:
    """Factory of progress bars that are all on or all off.

    Args:
      quiet: turn every bar off.
    """

    def __init__(self, quiet: bool = False):
        self.enabled = not quiet and sys.stderr.isatty()

    def bar(self, description: str, total: int | None = None, unit: str = "it") -> tqdm:
        """Open a bar. Call `update(n)` as work completes and `close()` at the end."""
        return tqdm(total=total, desc=description, unit=unit, disable=not self.enabled, leave=False, dynamic_ncols=True)

    def iterate(self, iterable: Iterable[T], description: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
        """Yield the items of `iterable` while a bar counts them."""
        with self.bar(description, total, unit) as bar:
            for item in iterable:
                yield item
                bar.update(1)

    def write(self, text: str) -> None:
        """Print a line to standard output without breaking an open bar."""
        if self.enabled:
            tqdm.write(text, file=sys.stdout)
        else:
            print(text, flush=True)
