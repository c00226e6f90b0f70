"""The one error type the core raises for bad user input, and the caller's names for inputs."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class InputError(ValueError):
    """Bad user input. The message names the input, the value, and what is accepted.

    ComfyUI shows the message in its error dialog; the CLI prints it and exits with 2.
    """

    def __init__(self, input_name: str, message: str):
        self.input_name, self.message = input_name, message
        super().__init__(f"{input_name}: {message}")


@contextmanager
def named_inputs(names: dict[str, str] | None) -> Iterator[None]:
    """Errors raised inside about core input `k` name `names[k]` instead: the caller's own name
    for it (a node's save_name for the core's out, say). Other errors pass unchanged."""
    try:
        yield
    except InputError as exc:
        if not names or exc.input_name not in names:
            raise
        renamed = type(exc).__new__(type(exc))
        InputError.__init__(renamed, names[exc.input_name], exc.message)
        raise renamed.with_traceback(exc.__traceback__) from exc.__cause__
