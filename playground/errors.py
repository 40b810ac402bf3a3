"""The root of the kit's exceptions; each subsystem derives its own."""


class PlaygroundError(Exception):
    """An error with a message meant for the person at the keyboard.

    Attributes:
        hint: what to do next, printed after the message by the CLI.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
