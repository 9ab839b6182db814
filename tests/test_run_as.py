"""Commands run as their job's owner: a blade running as root switches to the owner's account
(blade profile run_as = "owner", the default), never runs a person's command as root unless the
site asked for it (run_as = "blade"), and a missing account is an error in the task's log."""

from __future__ import annotations

import subprocess

import pytest
from conftest import root_only
from test_blade import Site, site  # noqa: F401 - the fixture

from tractorcli.jobs.model import Command, Task


@pytest.fixture(scope="module")
def account():
    name = "trtest_carol"
    made = subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name],
                          capture_output=True, text=True).returncode == 0
    yield name
    if made:
        subprocess.run(["userdel", name], capture_output=True)


def _sh(text: str) -> Command:
    return Command(("/bin/sh", "-c", text))


@root_only
def test_commands_run_as_the_owner_and_a_missing_account_is_an_error(site, account, tmp_path):  # noqa: F811
    s: Site = site('[[profile]]\nname = "default"\nrun_as = "owner"\n')
    s.work.chmod(0o777)  # the owner writes its answer where the job starts
    mine = s.spool(Task("who", cmds=(_sh("id -un > whoami.txt; echo HOME=$HOME USER=$USER"),)), owner=account)
    ghost = s.spool(Task("ghost", cmds=(_sh("id -un"),)), owner="nosuchperson")
    files = s.spool(Task("file", cmds=(Command(("TractorBuiltIn", "File", "delete", "/etc/hostname")),)),
                    owner=account)
    b = s.blade("--exit-when-idle")
    assert b.wait() == 0, b.text()
    assert (s.work / "whoami.txt").read_text().strip() == account
    assert (s.work / "whoami.txt").owner() == account
    assert s.task(mine, 1)["state"] == "done"
    assert s.task(ghost, 1)["state"] == "error"
    assert s.task(files, 1)["state"] == "error"
    logs = {jid: next(s.data.rglob(f"J{jid}/T1.log")).read_text() for jid in (mine, ghost, files)}
    assert f"USER={account}" in logs[mine]
    assert "no account 'nosuchperson' on this host to run the command as" in logs[ghost]
    assert "TractorBuiltIn File runs as the blade's account" in logs[files]


@root_only
def test_run_as_blade_is_the_sites_choice(site):  # noqa: F811
    s: Site = site('[[profile]]\nname = "default"\nrun_as = "blade"\n')
    jid = s.spool(Task("who", cmds=(_sh("id -un > whoami.txt"),)), owner="nosuchperson")
    b = s.blade("--exit-when-idle")
    assert b.wait() == 0, b.text()
    assert (s.work / "whoami.txt").read_text().strip() == "root"
    assert s.task(jid, 1)["state"] == "done"


@root_only
def test_an_account_is_looked_up_once_a_while_and_a_new_one_at_once():
    # a farm's accounts come from its directory (LDAP): a blade asks once per _ACCOUNT_TTL,
    # not at every command; a name not found is asked again, so a new account is found at once
    from tractorcli.blade import launch

    name = "trtest_dave"
    subprocess.run(["userdel", name], capture_output=True)
    launch._ACCOUNTS.clear()
    try:
        assert launch.run_account("owner", name)[1].startswith(f"no account '{name}'")
        assert subprocess.run(["useradd", "--no-create-home", name], capture_output=True).returncode == 0
        account, why = launch.run_account("owner", name)
        assert why is None and account.name == name
        subprocess.run(["userdel", name], capture_output=True, check=True)
        assert launch.run_account("owner", name)[0] == account  # remembered
        launch._ACCOUNTS[name] = (launch._ACCOUNTS[name][0] - launch._ACCOUNT_TTL, account)  # its time is up
        assert launch.run_account("owner", name)[1].startswith(f"no account '{name}'")
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        launch._ACCOUNTS.clear()
