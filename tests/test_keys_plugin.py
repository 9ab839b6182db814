"""A site's keys plug-in (blade.toml keys_plugin): a real blade offers the keys the plug-in returns
before each claim; a plug-in that fails is logged once and the blade goes on with its profile's keys."""

from __future__ import annotations

import time

import pytest
from test_blade import sh, site  # noqa: F401 - site: the blade tests' fixture

from tractorcli.blade.keys_plugin import KeysPlugin
from tractorcli.jobs.model import Task

PLUGIN = '''
import os
def offer(keys, blade):
    # a production database stand-in: the show's licence server says yes when this file exists
    if os.path.exists({flag!r}):
        return keys + ["ShowA"]
    return keys
'''


def test_a_plugin_changes_what_a_blade_takes(site):
    s = site()
    flag = s.root / "show-a-open"
    (s.cfg / "site_keys.py").write_text(PLUGIN.format(flag=str(flag)))
    (s.cfg / "blade.toml").write_text('[defaults]\nprovides = ["PixarRender"]\nslots = 2\n'
                                      'keys_plugin = "site_keys.py"\n')
    show = s.spool(Task("s", cmds=(sh("touch show.done", service="ShowA"),)), title="show A")
    plain = s.spool(Task("p", cmds=(sh("touch plain.done", service="PixarRender"),)), title="plain")
    s.blade()
    s.wait(lambda: (s.work / "plain.done").exists(), msg="the plain job")
    time.sleep(0.8)  # several claims: the show's command is not offered
    assert not (s.work / "show.done").exists()
    assert s.task(show, 1)["state"] == "ready"
    flag.touch()
    s.wait(lambda: (s.work / "show.done").exists(), msg="the show's job once the plug-in offers ShowA")
    assert s.one("SELECT provides FROM blades")["provides"] == ["PixarRender"]  # the profile's keys
    assert plain


def test_a_failing_plugin_is_logged_once_and_never_stops_the_blade(site):
    s = site()
    (s.cfg / "bad_keys.py").write_text("def offer(keys, blade):\n    raise RuntimeError('db down')\n")
    (s.cfg / "blade.toml").write_text('[defaults]\nprovides = ["PixarRender"]\nslots = 1\n'
                                      'keys_plugin = "bad_keys.py"\n')
    jids = [s.spool(Task("t", cmds=(sh(f"touch {i}.done", service="PixarRender"),)), title=f"j{i}")
            for i in range(3)]
    b = s.blade()
    s.wait(lambda: all((s.work / f"{i}.done").exists() for i in range(3)), msg="the jobs despite the plug-in")
    assert b.proc.poll() is None
    assert b.text().count("keys plug-in") == 1
    assert "offer() failed (RuntimeError: db down); offering the profile's keys" in b.text()
    assert jids


@pytest.mark.parametrize("text, words", [
    ("def offer(:\n", "does not load (SyntaxError"),
    ("x = 1\n", "has no offer(keys, blade) function"),
    ("def offer(keys, blade):\n    return 'ShowA'\n", "returned a string, not a list of keys"),
    ("def offer(keys, blade):\n    return [1]\n", "returned (1,), not a list of strings"),
])
def test_what_a_plugin_can_get_wrong(tmp_path, text, words):
    path = tmp_path / "p.py"
    path.write_text(text)
    said: list[str] = []
    p = KeysPlugin(path, said.append)
    assert p.offer(("A",), {}) == ("A",)
    assert p.offer(("A",), {}) == ("A",)
    assert len(said) == 1 and words in said[0]
