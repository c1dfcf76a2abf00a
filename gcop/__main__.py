"""`python -m gcop ...` (e.g. under `accelerate launch -m gcop compile ...`)."""

from gcop.cli import app

app()
