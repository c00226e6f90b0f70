"""The one error type the core raises for bad user input."""


class InputError(ValueError):
    """Bad user input. The message names the input, the value, and what is accepted.

    ComfyUI shows the message in its error dialog; the CLI prints it and exits with 2.
    """

    def __init__(self, input_name: str, message: str):
        self.input_name, self.message = input_name, message
        super().__init__(f"{input_name}: {message}")
