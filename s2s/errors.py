"""The one exception type for user mistakes.

Anything a user can get wrong (a missing file, a misspelt key, a corrupt checkpoint) raises
`UserError` with one line that names the thing and says what to do. The CLI prints it and exits
with status 2; internal invariants use `assert` and are bugs when they fire.
"""


class UserError(Exception):
    """A mistake in the user's input, reported as one clear line (exit code 2)."""
