"""The library's face: `plans` (validate, plan, select, run) and `jobs` (list, receive, wait,
stop, remove)."""
