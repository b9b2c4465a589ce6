"""Every error nerkit reports to a user, under one base class. Imports nothing, so any layer (and the CLI,
before it loads torch) can raise and catch them.

str() is one line naming where the problem is: a file (FILE or FILE:LINE) or a settings field
(`data.dir`, `model_dir`). A library raises with the field; the CLI shows the option that set it.
"""

from __future__ import annotations


class NerkitError(ValueError):
    """Bad input, settings or model folders: one line, exit code 2 on the command line.

    field: the setting the message is about ("data.dir", "model_dir", ...), or None when the message
    names a file itself. str() is "field: message"."""

    def __init__(self, message: str, field: str | None = None):
        self.message = message.strip().splitlines()[0] if message.strip() else type(self).__name__
        self.field = field
        super().__init__(f"{field}: {self.message}" if field else self.message)


class ConfigError(NerkitError):
    """A settings file or override that does not fit the settings' dataclasses."""


class CorpusError(NerkitError):
    """Bad input data: 'FILE:LINE: what was expected'."""


class ModelError(NerkitError):
    """A model name, folder or exported file that cannot be used."""


class UsageError(NerkitError):
    """Options that do not go together, or an input path that does not exist."""


class PortError(NerkitError):
    """An address the server cannot listen on (in use, or not an address of this machine)."""


def first_line(e: BaseException, limit: int | None = 300) -> str:
    """The first line of a library exception's message (libraries raise pages), or its type when empty."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__
