"""The blade: a worker on a render host.

`profile` reads the site's blade profiles (`blade.toml`) and picks the one
for this host; `output` scans command output for progress and exit-status
directives.  Launch-time substitutions live in `tractorcli.subst`.
"""
