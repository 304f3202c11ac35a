"""Transports: one small interface (base.py), SSH through Fabric (ssh.py), local (local.py)."""
