"""The one base class of every error that a user's input causes (exit code 2 from the CLI).

A benchmark must never turn bad input into a number, nor answer a user's mistake with a traceback.
Every check that rejects input (a config value, a data file, a weights file, a records file) raises
a subclass of :class:`UserError` whose message names the culprit: the file and the key, field or
line, and the allowed values where there is a closed set. ``passbench.cli`` maps exactly this class
to exit code 2 with ``error: <message>`` and no traceback; any other exception is a failure of the
run itself (exit code 1, or a traceback for a bug).

The subclasses keep their historical builtin base too (``ConfigError`` is a ``ValueError``,
``DataRootError`` a ``FileNotFoundError``, ...), so callers that catch those still work. This module
imports nothing: every layer may use it.
"""

from __future__ import annotations


class UserError(Exception):
    """Input the user controls is wrong (config, override, data, weights, records file).

    The message must name the file and the key / field / line at fault, so the user can fix it
    without reading code. Raised before any result is written.
    """
