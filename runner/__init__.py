"""runner: declarative YAML playbooks over SSH, where every unit of work is a job."""

__version__ = "0.1.0"
