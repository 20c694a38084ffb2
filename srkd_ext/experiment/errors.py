"""The one exception type the CLI turns into a single line on stderr and a non-zero exit.

Anything a user can get wrong (a dataset name, a path, an option value, a config file, an output
folder that holds another experiment) is raised as `UserError` with a message that names the
argument; everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input. `str(err)` is the whole message, one line."""

    exit_code = 2
