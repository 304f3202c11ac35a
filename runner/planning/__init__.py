"""Planning: files in, a Plan out. Pure: no job store, connections or output."""
