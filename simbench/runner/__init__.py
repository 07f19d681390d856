"""The runner: suite -> job graph -> cached stages -> results."""
