"""The command line: argv in, the API called, exit codes out."""
