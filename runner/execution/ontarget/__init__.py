"""Jobs that keep their work and output on the target: the job directory, launch and reconnect."""
