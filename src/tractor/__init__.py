"""Pixar Tractor's Python package name, for pipeline code written against Tractor.

`tractor.api.author` (building and spooling jobs) and `tractor.api.query`
(listing and operating on jobs, tasks, commands, invocations and blades)
are a thin face over tractorcli's own `tractorcli.jobs.author` and
`tractorcli.api.query`: the same objects, with what only Tractor's code
needs (string timestamps, Tractor's return values) added here.
"""
