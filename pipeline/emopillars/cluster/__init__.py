"""Spreading a run over processes: workers sharing a run folder, `launch` (one worker per GPU)
and Ray tasks."""
