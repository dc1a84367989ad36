"""The one exception type for problems a user can cause and fix.

Everything raised for bad input — a prompt, an image or mask, a setting out of range, an unknown
step rule, a model that is not downloaded — is a `UserError` (a ValueError), raised where the input
is validated, with a message that says what to fix. Front ends (CLI, demo) show a UserError's
message as it is; any other exception is a bug: they log it with its traceback and say
"internal error (logged)" instead of blaming the input.
"""


class UserError(ValueError):
    """A problem with what the user asked for; the message says what to fix."""
