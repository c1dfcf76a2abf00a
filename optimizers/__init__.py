"""Compile algorithms for GCoP programs (ExecTune and its baselines), one per module."""
