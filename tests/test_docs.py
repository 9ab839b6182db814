"""Man pages and shell completions: committed files match the generator, and work.

The option names checked here are read from the click commands directly,
not from docgen, so a generator that drops or mangles an option fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tractorcli.cli import PROGRAMS, docgen
from tractorcli.errors import ExitStatus

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "python -m tractorcli.cli.docgen --write"
KNOWN_MACROS = {".TH", ".SH", ".TP", ".PP", ".nf", ".fi", ".BR", ".RS", ".RE", '.\\"'}

programs = pytest.mark.parametrize("prog", sorted(PROGRAMS))


def options_of(prog: str) -> list[click.Option]:
    command = docgen.load_command(prog)
    ctx = click.Context(command, info_name=prog, **command.context_settings)
    return [p for p in command.get_params(ctx) if isinstance(p, click.Option) and not p.hidden]


def names_of(opt: click.Option) -> list[str]:
    return list(opt.opts) + list(opt.secondary_opts)


def file_paths(prog: str) -> dict[str, Path]:
    return {
        "man": ROOT / "man" / f"{prog}.1",
        "bash": ROOT / "completions" / f"{prog}.bash",
        "zsh": ROOT / "completions" / f"_{prog}",
        "fish": ROOT / "completions" / f"{prog}.fish",
    }


def read(path: Path) -> str:
    if not path.is_file():
        pytest.fail(f"{path.relative_to(ROOT)} is missing; run `{REGENERATE}`")
    return path.read_text(encoding="utf-8")


# --- (a) committed files are what the generator makes now -------------------------


def test_generator_covers_every_program_and_nothing_else():
    expected = set()
    for prog in PROGRAMS:
        expected |= {str(p.relative_to(ROOT)) for p in file_paths(prog).values()}
    assert set(docgen.generate()) == expected


@programs
def test_committed_files_are_current(prog):
    generated = docgen.generate([prog])
    for path in file_paths(prog).values():
        rel = str(path.relative_to(ROOT))
        assert read(path) == generated[rel], f"{rel} is out of date; run `{REGENERATE}`"


def test_generation_is_deterministic():
    assert docgen.generate() == docgen.generate()


def test_check_cli_reports_missing_and_changed_files(tmp_path):
    def run(*args, env=None):
        return subprocess.run([sys.executable, "-m", "tractorcli.cli.docgen", *args],
                              capture_output=True, text=True, env=env, timeout=60)

    # the committed tree is current, whatever the terminal width or locale
    env = dict(os.environ, COLUMNS="40", LC_ALL="C", TZ="Pacific/Chatham")
    r = run("--check", "--root", str(ROOT), env=env)
    assert r.returncode == 0, r.stderr

    r = run("--check", "--root", str(tmp_path))
    assert r.returncode == 1
    for rel in docgen.generate():
        assert f"missing: {rel}" in r.stderr

    r = run("--write", "--root", str(tmp_path))
    assert r.returncode == 0, r.stderr
    r = run("--check", "--root", str(tmp_path))
    assert r.returncode == 0, r.stderr

    victim = tmp_path / "man" / f"{sorted(PROGRAMS)[0]}.1"
    victim.write_text(victim.read_text() + ".\\\" edited by hand\n")
    r = run("--check", "--root", str(tmp_path))
    assert r.returncode == 1
    assert f"differs: man/{victim.name}" in r.stderr
    assert REGENERATE in r.stderr

    assert run("--root", str(tmp_path)).returncode != 0  # neither --write nor --check


# --- (b) every option is in the man page and in the three completions ------------


@programs
def test_every_option_is_documented_and_completed(prog):
    files = {kind: read(path) for kind, path in file_paths(prog).items()}
    bash_words = set(re.search(r"local opts='([^']*)'", files["bash"]).group(1).split())
    for opt in options_of(prog):
        for name in names_of(opt):
            assert f"\\fB{name.replace('-', chr(92) + '-')}\\fR" in files["man"], f"{name} not in man page"
            assert name in bash_words, f"{name} not offered by the bash completion"
            assert re.search(r"^  '(\([^)]*\))?\*?" + re.escape(name) + r"=?\[", files["zsh"], re.M), \
                f"{name} has no _arguments spec in the zsh completion"
            flag = f"-l {name[2:]}" if name.startswith("--") else (f"-s {name[1:]}" if len(name) == 2 else f"-o {name[1:]}")
            assert re.search(r"^complete -c " + re.escape(prog) + r" .*?" + re.escape(flag) + " ", files["fish"], re.M), \
                f"{name} not in the fish completion"
        if opt.help:
            first_words = " ".join(opt.help.split()[:4])
            assert first_words.replace("-", "\\-") in files["man"]
            assert first_words.replace("'", "\\'") in files["fish"]


@programs
def test_man_page_options_carry_metavars(prog):
    man = read(file_paths(prog)["man"])
    command = docgen.load_command(prog)
    ctx = click.Context(command, info_name=prog, **command.context_settings)
    for opt in options_of(prog):
        if opt.is_flag or opt.count:
            continue
        tag = ", ".join(f"\\fB{n}\\fR" for n in sorted(names_of(opt), key=lambda n: n.startswith("--")))
        tag = tag.replace("-", "\\-") + f" \\fI{opt.make_metavar(ctx).replace('-', chr(92) + '-')}\\fR"
        assert f".TP\n{tag}\n" in man, f"no option entry {tag!r}"


# --- (c) the shells accept the scripts, and they complete the right things --------


def _shell_check(shell: str, path: Path) -> None:
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed")
    r = subprocess.run([exe, "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and not r.stderr.strip(), f"{shell} -n {path.name}: {r.stderr}"


@programs
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_accepts_completion(prog, shell):
    _shell_check(shell, file_paths(prog)[shell])


def bash_complete(script: Path, words: list[str], cwd: Path) -> list[str]:
    """Run the completion function as bash would for `words` (last one being completed)."""
    prog = words[0]
    code = (
        f"source {json.dumps(str(script))}\n"
        f"complete -p {prog} >/dev/null || exit 3\n"
        f"COMP_WORDS=({' '.join(_bash_quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        f"{docgen.bash_function_name(prog)}\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", code], capture_output=True, text=True,
                       cwd=cwd, timeout=30)
    assert r.returncode == 0, r.stderr
    return [ln for ln in r.stdout.split("\n") if ln]


def _bash_quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


@programs
def test_bash_completion_behaviour(prog, tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    script = file_paths(prog)["bash"]
    (tmp_path / "jobs.tgz").write_text("x")
    (tmp_path / "jobs two.tgz").write_text("x")
    (tmp_path / "other").mkdir()
    options = options_of(prog)
    all_names = {n for o in options for n in names_of(o)}

    assert set(bash_complete(script, [prog, "--"], tmp_path)) == {n for n in all_names if n.startswith("--")}
    command = docgen.load_command(prog)
    if isinstance(command, click.Group):  # a word that is not an option: the subcommand
        ctx = click.Context(command, info_name=prog)
        assert set(command.list_commands(ctx)) <= set(bash_complete(script, [prog, ""], tmp_path))
    else:
        assert set(bash_complete(script, [prog, ""], tmp_path)) == all_names

    for opt in options:
        if opt.is_flag or opt.count:
            continue
        for name in names_of(opt):
            got = bash_complete(script, [prog, name, "jo"], tmp_path)
            if isinstance(opt.type, click.Path) and opt.type.file_okay:
                assert sorted(got) == ["jobs two.tgz", "jobs.tgz"], name
                # --name=value: bash splits at '='
                assert sorted(bash_complete(script, [prog, name, "=", "jo"], tmp_path)) == \
                    ["jobs two.tgz", "jobs.tgz"], name
            elif isinstance(opt.type, click.Path) and opt.type.dir_okay:
                # directories only: "other" is a directory, the jobs*.tgz are files
                assert got == [], name
                assert bash_complete(script, [prog, name, "ot"], tmp_path) == ["other"], name
            elif isinstance(opt.type, click.Choice):
                assert set(got) == {c for c in opt.type.choices if str(c).startswith("jo")}, name
            else:
                assert got == [], f"{name} takes a value; nothing should be offered, got {got}"
                assert bash_complete(script, [prog, name, ""], tmp_path) == [], name


@programs
def test_fish_completion_behaviour(prog, tmp_path):
    fish = shutil.which("fish")
    if fish is None:
        pytest.skip("fish is not installed")
    (tmp_path / "jobs.tgz").write_text("x")
    script = file_paths(prog)["fish"]

    def complete(line: str) -> list[str]:
        r = subprocess.run([fish, "--no-config", "-c", f"source {script}; complete -C {_bash_quote(line)}"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=30)
        assert r.returncode == 0, r.stderr
        return [ln.split("\t")[0] for ln in r.stdout.split("\n") if ln]

    longs = {n for o in options_of(prog) for n in names_of(o) if n.startswith("--")}
    assert set(complete(f"{prog} --")) == longs
    for opt in options_of(prog):
        if opt.is_flag or opt.count:
            continue
        long = [n for n in names_of(opt) if n.startswith("--")][0]
        got = complete(f"{prog} {long} jo")
        if isinstance(opt.type, click.Path) and opt.type.file_okay:
            assert got == ["jobs.tgz"], long
        elif not isinstance(opt.type, click.Choice):
            assert got == [], long


def test_group_completion_subcommands_and_attribute_names(tmp_path):
    """tq: subcommands, their own options, and attribute names after -c/--cols and -s/--sortby."""
    from tractorcli.query.attributes import attribute_names

    command = docgen.load_command("tq")
    ctx = click.Context(command, info_name="tq")
    subcommands = set(command.list_commands(ctx))
    task_attrs = attribute_names("task", related=False)
    if shutil.which("bash"):
        script = file_paths("tq")["bash"]
        assert set(bash_complete(script, ["tq", ""], tmp_path)) == subcommands | {"cmds", "invos", "why", "fields"}
        assert bash_complete(script, ["tq", "ta"], tmp_path) == ["tasks"]
        offered = set(bash_complete(script, ["tq", "--json", "--tf", "%c", "tasks", "-c", ""], tmp_path))
        assert set(task_attrs) <= offered and {"Job.owner", "Job.priority", "Blade.name"} <= offered
        assert not {n for n in offered - set(task_attrs) if "." not in n}  # others only qualified
        # a comma list, items added (+), removed (-) or re-sized (=), qualified names
        assert bash_complete(script, ["tq", "tasks", "-c", "jid,+statet"], tmp_path) == ["jid,+statetime"]
        assert bash_complete(script, ["tq", "jobs", "--cols", "-tit"], tmp_path) == ["-title"]
        assert bash_complete(script, ["tq", "tasks", "-s", "-Job.pri"], tmp_path) == ["-Job.pri", "-Job.priority"]
        assert bash_complete(script, ["tq", "tasks", "-c", "tid,Blade.na"], tmp_path) == ["tid,Blade.name"]
        # clause words: the entity's attributes (and joined ones, unqualified) and search aliases
        assert bash_complete(script, ["tq", "jobs", "numerr"], tmp_path) == ["numerror"]
        assert bash_complete(script, ["tq", "tasks", "jid=1", "and", "Own"], tmp_path) == []
        assert "owner" in bash_complete(script, ["tq", "tasks", "ow"], tmp_path)  # Job.owner, unqualified
        assert bash_complete(script, ["tq", "--yes", "retry", "err"], tmp_path) == ["error"]
        assert bash_complete(script, ["tq", "nimby", "regis"], tmp_path) == ["registered"]
        assert bash_complete(script, ["tq", "chkeys", "-k", "linux", "retryrc"], tmp_path) == ["retryrc", "retryrcodes"]
        assert bash_complete(script, ["tq", "ping", "x"], tmp_path) == []
        assert bash_complete(script, ["tq", "tasks", "--cols", "=", "statet"], tmp_path) == ["statetime"]
        assert bash_complete(script, ["tq", "jobs", "-s", "numerr"], tmp_path) == ["numerror"]
        assert bash_complete(script, ["tq", "cmds", "--sortby", "retryrc"], tmp_path) == ["retryrc", "retryrcodes"]
        longs = set(bash_complete(script, ["tq", "tasks", "jid=1", "--"], tmp_path))
        assert {"--cols", "--sortby", "--limit", "--yes", "--json"} <= longs
        assert "--cols" not in bash_complete(script, ["tq", "retry", "--"], tmp_path)
        assert "--cols" not in bash_complete(script, ["tq", "--"], tmp_path)
    fish = shutil.which("fish")
    if fish:
        script = file_paths("tq")["fish"]

        def complete(line: str) -> list[str]:
            r = subprocess.run([fish, "--no-config", "-c", f"source {script}; complete -C {_bash_quote(line)}"],
                               capture_output=True, text=True, cwd=tmp_path, timeout=30)
            assert r.returncode == 0, r.stderr
            return [ln.split("\t")[0] for ln in r.stdout.split("\n") if ln]

        assert subcommands <= set(complete("tq "))
        assert set(complete("tq tasks -c statet")) == {"statetime"}
        assert set(complete("tq jobs numerr")) == {"numerror"}
        assert "registered" in complete("tq trace regis")
        assert set(complete("tq tasks -c jid,+statet")) == {"jid,+statetime"}
        assert set(complete("tq tasks -s Job.prio")) == {"Job.priority"}
        # (a separate word starting with - is an option to fish: --sortby=-col form)
        assert set(complete("tq tasks --sortby=-Job.prio")) == {"--sortby=-Job.priority"}
        assert "--cols" in complete("tq jobs --")
        assert "--cols" not in complete("tq --")
    zsh = file_paths("tq")["zsh"]
    assert "'tasks')" in read(zsh) and "statetime" in read(zsh) and "compset -P" in read(zsh)


def test_tq_man_page_lists_every_subcommand_with_its_options():
    man = read(file_paths("tq")["man"])
    commands = man.split(".SH COMMANDS", 1)[1].split("\n.SH ", 1)[0]
    command = docgen.load_command("tq")
    ctx = click.Context(command, info_name="tq")
    for name in command.list_commands(ctx):
        assert f".TP\n\\fB{name}\\fR\n" in commands, name
    assert "\\fB\\-p\\fR, \\fB\\-\\-priority\\fR" in commands  # tq chpri's own option
    assert "\\fB\\-\\-lasttry\\fR" in commands or "\\-\\-lasttry" in commands


# --- (d) the man page is well formed ----------------------------------------------


@programs
def test_man_page_structure(prog):
    man = read(file_paths(prog)["man"])
    lines = man.split("\n")
    th = [ln for ln in lines if ln.startswith(".TH ")]
    assert len(th) == 1 and th[0].startswith(f'.TH "{prog.upper().replace("-", chr(92) + "-")}" "1" ')
    from tractorcli import __version__

    assert __version__ in th[0] and not re.search(r"\d{4}-\d{2}-\d{2}", th[0])
    sections = [ln[4:] for ln in lines if ln.startswith(".SH ")]
    for needed in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXAMPLES", "EXIT STATUS",
                   "ENVIRONMENT", "FILES"):
        assert needed in sections, f"no .SH {needed}"
    assert sections.index("NAME") < sections.index("SYNOPSIS") < sections.index("DESCRIPTION") \
        < sections.index("OPTIONS")
    name_line = lines[lines.index(".SH NAME") + 1]
    assert name_line.startswith(prog.replace("-", "\\-") + " \\- ")
    for var in ("TRACTOR_CONFIGDIR", "TRACTOR_DEBUG"):
        assert f"\\fB{var}\\fR" in man
    for f in ("tractor.toml", "db.toml"):
        assert f in man
    for other in PROGRAMS:
        if other != prog:
            assert f".BR {other.replace('-', chr(92) + '-')} (1)" in man


@programs
def test_man_page_escaping(prog):
    man = read(file_paths(prog)["man"])
    assert "\b" not in man, "click's \\b marker leaked into the man page"
    for n, line in enumerate(man.split("\n"), 1):
        if line.startswith('.\\"'):
            continue
        if line.startswith((".", "'")):
            assert line.split(" ")[0] in KNOWN_MACROS, f"line {n}: unexpected request {line!r}"
        assert not re.search(r"(?<!\\)-", line), f"line {n}: unescaped hyphen: {line!r}"
        assert not re.search(r"\\(?![-&efIRB])", line), f"line {n}: stray backslash: {line!r}"


@programs
def test_man_page_examples_and_exit_status_come_from_the_epilog(prog):
    man = read(file_paths(prog)["man"])
    command = docgen.load_command(prog)
    epilog_lines = (command.epilog or "").split("\n")
    assert "Examples:" in epilog_lines, f"the epilog of {prog} has no '\\b' + 'Examples:' block"
    assert ".SH EXAMPLES\n.nf\n" in man
    block = man.split(".SH EXAMPLES\n.nf\n", 1)[1].split("\n.fi\n", 1)[0].split("\n")
    examples = epilog_lines[epilog_lines.index("Examples:") + 1:] + [""]
    examples = examples[:examples.index("")]
    assert block == [docgen.roff_escape(ln) for ln in examples]
    exits = man.split(".SH EXIT STATUS\n", 1)[1].split("\n.SH ", 1)[0]
    for status in ExitStatus:
        assert f".TP\n\\fB{int(status)}\\fR\n" in exits, f"exit status {int(status)} not documented"


def test_groff_renders_without_warnings():
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed")
    for prog in PROGRAMS:
        r = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", str(file_paths(prog)["man"])],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stderr == "", f"{prog}.1: {r.stderr}"


def test_roff_escape():
    assert docgen.roff_escape(".start") == "\\&.start"
    assert docgen.roff_escape("'quoted'") == "\\&'quoted'"
    assert docgen.roff_escape("a\\b --x") == "a\\eb \\-\\-x"
    assert docgen.roff_escape("mid.dle") == "mid.dle"


# --- the generator on a command using what tractor-dbctl does not ----------------


def _odd_command() -> click.Command:
    @click.command("odd", epilog="\b\nExamples:\n  odd --mode fast x.alf\n  .dotted 'quoted' \\n\n\n"
                                  "\b\nExit status: 0 fine; 7 no such file.\n\nSee also the manual.")
    @click.argument("files", nargs=-1, type=click.Path())
    @click.option("--mode", type=click.Choice(["fast", "slow"]), help="Speed: [fast] or 'slow'.")
    @click.option("--into", type=click.Path(file_okay=False), help="A directory.")
    @click.option("-t", "--tag", multiple=True, help="Tag; give it again for more. A \\ backslash.")
    @click.option("--color/--no-color", default=True, help=".leading dot")
    def odd(**_kw):
        """Odd command.

        \b
        verbatim  line
        .also verbatim
        """

    return odd


def test_generator_handles_choices_dirs_arguments_and_specials(tmp_path):
    doc = docgen.describe("odd", _odd_command())
    assert [o.kind for o in doc.options] == ["choice", "dir", "value", "flag", "flag"]
    assert doc.exit_codes[0] == (0, "fine") and (7, "no such file") in doc.exit_codes
    assert dict(doc.exit_codes)[2] == docgen.GENERIC_EXIT_TEXT[ExitStatus.USAGE]

    man = docgen.render_man(doc)
    assert "\\fB\\-\\-color\\fR, \\fB\\-\\-no\\-color\\fR" in man
    assert "\n  .dotted 'quoted' \\en\n" in man and "\\&.leading dot" in man and "\\&.also verbatim" in man
    assert ".SH NOTES\nSee also the manual." in man
    assert "\\fB\\-t\\fR, \\fB\\-\\-tag\\fR \\fITEXT\\fR" in man and "(may be repeated)" in man

    zsh = docgen.render_zsh(doc)
    assert "'--mode=[Speed\\: \\[fast\\] or '\\''slow'\\''.]:\\[fast|slow\\]:(fast slow)'" in zsh
    assert ":_files -/'" in zsh and "'*:file:_files'" in zsh and "'*-t[" in zsh
    fish = docgen.render_fish(doc)
    assert "-l mode -x -a 'fast slow'" in fish and "__fish_complete_directories" in fish
    assert "complete -c odd -f\n" not in fish  # positional files: keep file completion

    paths = {}
    for kind, text in (("bash", docgen.render_bash(doc)), ("zsh", zsh), ("fish", fish)):
        paths[kind] = tmp_path / f"odd.{kind}"
        paths[kind].write_text(text)
        if shutil.which(kind):
            _shell_check(kind, paths[kind])

    (tmp_path / "fastdir").mkdir()
    (tmp_path / "x.alf").write_text("")
    assert bash_complete(paths["bash"], ["odd", "--mode", "f"], tmp_path) == ["fast"]
    assert bash_complete(paths["bash"], ["odd", "--into", "f"], tmp_path) == ["fastdir"]
    assert bash_complete(paths["bash"], ["odd", "x"], tmp_path) == ["x.alf"]
    assert set(bash_complete(paths["bash"], ["odd", "--c"], tmp_path)) == {"--color"}


def test_generator_refuses_an_unknown_exit_status():
    cmd = click.Command("bad", epilog="\b\nExit status: 0 fine; 42 the answer.")
    with pytest.raises(docgen.DocgenError, match="42"):
        docgen.describe("bad", cmd)


# --- (e) --help is cheap and complete ---------------------------------------------


def test_help_imports_neither_psycopg_nor_rich():
    code = (
        "import sys, json\n"
        "from tractorcli.cli.dbctl import main\n"
        "rc = main(['--help'])\n"
        "sys.stdout.flush()\n"
        "print('RC=%d' % rc)\n"
        "print('HEAVY=' + json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'rich'))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout.rstrip("\n").split("\n")
    assert out[-2] == "RC=0"
    assert json.loads(out[-1].partition("=")[2]) == [], "--help imported psycopg or rich"
    assert "Examples:" in r.stdout and "--start-for-engine" in r.stdout


def test_docgen_imports_neither_psycopg_nor_rich():
    code = (
        "import sys, json\n"
        "from tractorcli.cli import docgen\n"
        "docgen.generate()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'rich'))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


def test_installed_console_script_help():
    exe = Path(sys.executable).parent / "tractor-dbctl"
    if not exe.exists():
        found = shutil.which("tractor-dbctl")
        if found is None:
            pytest.skip("tractor-dbctl is not installed as a console script")
        exe = Path(found)
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Examples:" in r.stdout and "Usage: tractor-dbctl" in r.stdout
