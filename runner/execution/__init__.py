"""Running a Plan: the executor, child runners, steps, sessions and output sinks."""
