"""Every exception the project raises on purpose, in one place.

A `UserError` (a ValueError) is a problem a user can cause and fix — a prompt, an image or mask,
a setting out of range, an unknown model or step rule, a model that is not downloaded, a full
queue — raised where the input is validated, with a message that says what to fix. Front ends
(CLI, demo) show a UserError's message as it is; any other exception is a bug: they log it with
its traceback and say "internal error (logged)" instead of blaming the input.

A `ServerError` is the server's own trouble, not the request's: the cluster that runs the jobs cannot
be reached, an image does not fit in the device's memory, the server is restarting. Front ends show its
message as it is too (it says what to do: try again later), and the metrics count it apart from users'
mistakes (glide.serving.metrics), so an operator sees an outage as one.

`Cancelled` is not an error of anyone's: a run or a job stopped because its user asked.
"""


class UserError(ValueError):
    """A problem with what the user asked for; the message says what to fix."""


# ------------------------------------------------------------------------------------------ what was asked
class InputError(UserError):
    """A prompt, image, mask or setting that cannot be used; the message names the field and what is allowed."""


class UnknownModel(InputError):
    """A model family name that is not one of `glide.families.FAMILIES`."""


class SamplerError(UserError):
    """A bad sampler request (unknown plugin, parameter out of range, ...); the message says what is allowed."""


class UsageError(UserError):
    """A problem with what the command line names (a file, a prompt), reported before any model loads."""


# ------------------------------------------------------------------------------------------ models on disk
class ModelNotAvailable(UserError):
    """A component of a family is not present locally (and, for the embedded family, cannot be fetched)."""


class DownloadError(UserError):
    """A file could not be downloaded, or what was downloaded was not the expected file."""


class CheckpointError(UserError):
    """A checkpoint file exists but cannot be loaded (typically an interrupted download)."""


# ------------------------------------------------------------------------------------------ serving
class QueueFull(UserError):
    """Too many requests are waiting (in all, or from one user); the message says so in words a user understands."""


class RateLimited(QueueFull):
    """One user asked for more images in the last minute than the server allows; the message says when to retry."""


# ------------------------------------------------------------------------------------------ the server's trouble
class ServerError(RuntimeError):
    """Not the request's fault: the server cannot serve it now; the message says so in words a user understands."""


class ServerRestarting(ServerError):
    """The server is shutting down: requests not finished by then get this, and new ones are refused."""


class ClusterUnavailable(ServerError):
    """The Ray cluster or the Serve application cannot be reached; the message says what to start."""


class OutOfDeviceMemory(ServerError):
    """An image that does not fit in the device's memory even alone; only its request fails."""


class Cancelled(RuntimeError):
    """A sampling run stopped between steps, or a job stopped waiting, because its user asked."""
