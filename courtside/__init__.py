"""The composition root: the `courtside` command, and the local stack it can run."""
