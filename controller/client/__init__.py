"""The clients of the front door: the remote command line's transport (remote.py), the
login profile (profile.py) and the Python API (api.py: `qforge.Client`)."""
