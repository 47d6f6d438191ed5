"""Exceptions raised while decoding event payloads and reading event files."""


class DecodeError(ValueError):
    """A payload that does not follow its encoding.

    ``encoding`` is the encoding name (``evt3``, ``mono``, ...) and
    ``offset_bytes`` the byte offset in the payload where decoding failed.
    """

    def __init__(self, encoding: str, offset_bytes: int, reason: str):
        self.encoding = encoding
        self.offset_bytes = offset_bytes
        self.reason = reason
        super().__init__(f"invalid {encoding} payload at byte {offset_bytes}: {reason}")


class FileFormatError(ValueError):
    """A file that cannot be read as events: unknown format, wrong content or missing topic."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")
