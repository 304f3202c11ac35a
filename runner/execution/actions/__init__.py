"""Step actions that converge: one module per action, each run with plain POSIX sh on the target."""
