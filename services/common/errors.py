"""One coded-error base for the whole stack.

Every error a client may see carries a stable machine `code` and a human `message`; transports
map it to their own shape (an `error` event, a JSON body with an HTTP status, a WebSocket close).
The message is written by us, never copied from user input, so it is safe to log.
"""

from __future__ import annotations


class CodedError(Exception):
    """An error with a stable `code`, a safe `message`, an HTTP status and whether it is fatal."""

    status: int = 400
    fatal: bool = False

    def __init__(self, code: str, message: str, *, status: int | None = None, fatal: bool | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        if fatal is not None:
            self.fatal = fatal

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}
