"""Benchmark suites built on the data layer: each package registers its own tasks, suites and
task groups as a plug-in of ``aptune.data.registry`` (see there), so nothing in the library
imports a benchmark by name."""
