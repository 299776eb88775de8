"""What every method's run shares: the run directory (every file name and the stage table), the
round driver (rounds, resume, the general gate), the evaluation step and the console output."""
