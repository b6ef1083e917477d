"""The worker processes: the Faust app, the transactional batch path and `sfe worker`."""
