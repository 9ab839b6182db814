"""Man pages and shell completions generated from the click definitions.

The click commands are the one description of every option; the files in
man/ and completions/ are derived from them here so they cannot drift
(tests/test_docs.py compares the committed files with this output).
Completion scripts are static: pressing Tab never starts Python.

Output depends only on the command definitions and the package version
(never on today's date, the terminal or the environment), so regenerating
is reproducible.

    python -m tractorcli.cli.docgen --write   # regenerate man/ and completions/
    python -m tractorcli.cli.docgen --check   # exit 1 if a file differs or is missing

Imports click and the program modules only: no psycopg, no rich.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from .. import __version__
from ..config import DB_FILE, ENV_CONFIGDIR, TRACTOR_FILE
from ..errors import ExitStatus
from . import PROGRAMS

REGENERATE = "python -m tractorcli.cli.docgen --write"

# Codes the epilog of a program does not describe get these words.
GENERIC_EXIT_TEXT: dict[ExitStatus, str] = {
    ExitStatus.OK: "success",
    ExitStatus.ERROR: "unexpected failure (a bug, or an error of no class below)",
    ExitStatus.USAGE: "bad command line",
    ExitStatus.CONFIG: "bad configuration",
    ExitStatus.NOT_RUNNING: "the database server is not running",
    ExitStatus.STATE: "refused in the current state",
    ExitStatus.UNAVAILABLE: "database unreachable",
    ExitStatus.NOT_FOUND: "not found",
    ExitStatus.PERMISSION: "permission denied",
    ExitStatus.SCHEMA: "schema mismatch",
    ExitStatus.STORAGE: "disk full or read-only",
    ExitStatus.BAD_INPUT: "bad input",
    ExitStatus.JOB_FAILED: "a followed job ended with errors",
    ExitStatus.INVARIANT: "the audit found the job database breaking an invariant",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl-C)",
}

# Outside pages worth a pointer, per program (the other programs are always listed).
SEE_ALSO_EXTRA: dict[str, tuple[str, ...]] = {
    "tractor-dbctl": ("pg_ctl", "pg_basebackup", "postgres"),
}

_NO_REWRAP = "\b"
_SAFE_WORD = re.compile(r"^-{1,2}[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class DocgenError(Exception):
    """A command definition the generator cannot render faithfully."""


# --- what the generators need to know about a command ------------------------


@dataclass(frozen=True)
class OptionDoc:
    names: tuple[str, ...]  # short names first, then long ones; secondary (--no-x) last
    metavar: str | None  # None: a flag, takes no value
    help: str
    kind: str  # "flag", "file", "dir", "choice", "columns" (a comma list of attribute names), "value"
    choices: tuple[str, ...] = ()
    multiple: bool = False
    envvar: str | None = None


@dataclass(frozen=True)
class CommandDoc:
    prog: str
    summary: str
    usage: tuple[str, ...]
    description: tuple[tuple[bool, tuple[str, ...]], ...]  # (verbatim, lines) paragraphs
    options: tuple[OptionDoc, ...]
    examples: tuple[str, ...]
    exit_codes: tuple[tuple[int, str], ...]
    notes: tuple[tuple[bool, tuple[str, ...]], ...]
    path_arguments: bool  # a positional argument names files
    subcommands: tuple[SubcommandDoc, ...] = ()  # a click group's (aliases included), for completion


@dataclass(frozen=True)
class SubcommandDoc:
    name: str
    summary: str
    options: tuple[OptionDoc, ...]  # its own options (not those it shares with the group)
    path_arguments: bool
    clause_words: tuple[str, ...] = ()  # what its clause words complete to (attributes, search aliases)


def load_command(prog: str) -> click.Command:
    module_name, _, attr = PROGRAMS[prog].partition(":")
    return getattr(importlib.import_module(module_name), attr or "command")


def _paragraphs(text: str) -> list[tuple[bool, list[str]]]:
    """Split click help text into (verbatim, lines) paragraphs, honouring `\\b`."""
    out: list[tuple[bool, list[str]]] = []
    for block in re.split(r"\n[ \t]*\n", inspect.cleandoc(text).partition("\f")[0]):
        lines = block.split("\n")
        verbatim = lines[0].strip() == _NO_REWRAP
        if verbatim:
            lines = lines[1:]
        lines = [ln.rstrip() for ln in lines] if verbatim else [ln.strip() for ln in lines]
        if any(lines):
            out.append((verbatim, lines))
    return out


def _one_line(text: str | None) -> str:
    return " ".join((text or "").replace(_NO_REWRAP, " ").split())


def _summary(command: click.Command) -> str:
    """A command's one-line summary: its short_help, else the first sentence of its help.

    Worked out here rather than by click's get_short_help_str, whose
    truncation changes between click versions (the generated files must not).
    """
    if command.short_help:
        return _one_line(command.short_help).rstrip(".")
    text = _one_line((command.help or "").split("\n\n")[0])
    m = re.search(r"(?<!\.)\.(?!\.)(?=\s|$)", text)  # a full stop, not an ellipsis
    return (text[:m.start()] if m else text).rstrip(".")


def _metavar(param: click.Parameter, ctx: click.Context) -> str:
    try:
        return param.make_metavar(ctx)
    except TypeError:  # click < 8.2 takes no context
        return param.make_metavar()  # type: ignore[call-arg]


def _option_doc(opt: click.Option, ctx: click.Context) -> OptionDoc:
    names = sorted(opt.opts, key=lambda n: n.startswith("--")) + list(opt.secondary_opts)
    for name in names:
        if not _SAFE_WORD.match(name):
            raise DocgenError(f"{ctx.info_name}: option name {name!r} cannot be put in a completion script")
    takes_value = not opt.is_flag and not opt.count
    kind, choices = "flag", ()
    if takes_value:
        if isinstance(opt.type, click.File):
            kind = "file"
        elif isinstance(opt.type, click.Path):
            kind = "dir" if (opt.type.dir_okay and not opt.type.file_okay) else "file"
        elif isinstance(opt.type, click.Choice):
            kind, choices = "choice", tuple(str(c) for c in opt.type.choices)
        else:
            kind = "value"
    help_ = _one_line(opt.help)
    extras = []
    if opt.required:
        extras.append("required")
    if opt.multiple or opt.count:
        extras.append("may be repeated")
    if extras:
        help_ = f"{help_} ({', '.join(extras)})".strip()
    envvar = opt.envvar if isinstance(opt.envvar, str) else None
    return OptionDoc(tuple(names), _metavar(opt, ctx) if takes_value else None, help_, kind, choices,
                     bool(opt.multiple or opt.count), envvar)


def _exit_codes(prog: str, text: str) -> list[tuple[int, str]]:
    """Parse 'Exit status: 0 success; 2 bad command line; ...' and complete it."""
    said: dict[int, str] = {}
    for item in filter(None, (i.strip() for i in text.split(";"))):
        m = re.fullmatch(r"(\d+)\s+(.+?)\.?", item, re.S)
        if not m:
            raise DocgenError(f"{prog}: cannot read exit status item {item!r} in the epilog")
        code = int(m.group(1))
        if code not in ExitStatus._value2member_map_:
            raise DocgenError(f"{prog}: the epilog names exit status {code}, which ExitStatus does not have")
        said[code] = " ".join(m.group(2).split())
    return [(int(s), said.get(int(s), GENERIC_EXIT_TEXT[s])) for s in sorted(ExitStatus)]


# Options whose value is one of the listed entity's attribute names (tq -c/--cols, -s/--sortby).
ATTRIBUTE_OPTIONS = frozenset({"--cols", "--sortby"})


def _entity_key(name: str) -> str | None:
    """The query entity a subcommand lists (tq jobs, tasks, cmds, ...), or None."""
    try:
        from ..query import attributes

        return attributes.entity(name).key
    except Exception:  # noqa: BLE001 - not a listing subcommand
        return None


def _column_names(entity: str) -> tuple[str, ...]:
    """What -c/--cols and -s/--sortby of a listing take: the entity's attributes and
    attribute aliases, and those of the entities it joins, qualified (Job.owner)."""
    from ..query.attributes import ENTITIES, attribute_names

    names = list(attribute_names(entity, related=False))
    for k in ENTITIES[entity].related:
        other = ENTITIES[k]
        names += [f"{other.name}.{n}" for n in sorted(set(other.attrs) | set(other.aliases))]
    return tuple(names)


def _clause_words(entity: str | None) -> tuple[str, ...]:
    """The words a clause over `entity` is made of: attribute names (its own and those of
    the entities it joins, as tq resolves them unqualified) and search aliases."""
    if not entity:
        return ()
    from ..query.aliases import SEARCH_ALIASES
    from ..query.attributes import attribute_names

    return tuple(sorted(set(attribute_names(entity)) | set(SEARCH_ALIASES.get(entity, {}))))


def _subcommands(group: click.Group, ctx: click.Context, shared: set[tuple[str, ...]]) -> tuple[SubcommandDoc, ...]:
    names = list(group.list_commands(ctx))
    names += sorted(a for a in getattr(group, "aliases", {}) if a not in names)
    out = []
    for name in names:
        sub = group.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        sctx = click.Context(sub, info_name=name, parent=ctx, **sub.context_settings)
        params = sub.get_params(sctx)
        entity = _entity_key(name)
        options = []
        for p in params:
            if not isinstance(p, click.Option) or p.hidden:
                continue
            doc = _option_doc(p, sctx)
            if doc.names in shared:
                continue
            if entity and ATTRIBUTE_OPTIONS & set(doc.names) and doc.kind == "value":
                doc = OptionDoc(doc.names, doc.metavar, doc.help, "columns", _column_names(entity),
                                doc.multiple, doc.envvar)
            options.append(doc)
        summary = _summary(sub)
        out.append(SubcommandDoc(name, summary, tuple(options), any(
            isinstance(p, click.Argument) and isinstance(p.type, (click.Path, click.File)) for p in params),
            _clause_words(getattr(sub, "clause_entity", None) or entity)))
    return tuple(out)


def describe(prog: str, command: click.Command | None = None) -> CommandDoc:
    command = command if command is not None else load_command(prog)
    ctx = click.Context(command, info_name=prog, **command.context_settings)
    params = command.get_params(ctx)
    options = tuple(_option_doc(p, ctx) for p in params if isinstance(p, click.Option) and not p.hidden)
    path_arguments = any(isinstance(p, click.Argument) and isinstance(p.type, (click.Path, click.File))
                         for p in params)

    examples: list[str] = []
    exit_text = ""
    notes: list[tuple[bool, tuple[str, ...]]] = []
    for verbatim, lines in _paragraphs(command.epilog or ""):
        head, sep, rest = lines[0].strip().partition(":")
        if sep and head.lower() == "examples":
            examples.extend(([rest.strip()] if rest.strip() else []) + lines[1:])
        elif sep and head.lower() == "exit status":
            exit_text = " ".join([rest] + lines[1:])
        else:
            notes.append((verbatim, tuple(lines)))

    summary = _summary(command)
    return CommandDoc(
        prog=prog,
        summary=summary,
        usage=tuple(command.collect_usage_pieces(ctx)),
        description=tuple((v, tuple(ls)) for v, ls in _paragraphs(command.help or "")),
        options=options,
        examples=tuple(examples),
        exit_codes=tuple(_exit_codes(prog, exit_text)),
        notes=tuple(notes),
        path_arguments=path_arguments,
        subcommands=_subcommands(command, ctx, {o.names for o in options})
        if isinstance(command, click.Group) else (),
    )


# --- roff ---------------------------------------------------------------------


def roff_escape(text: str) -> str:
    """Text for a roff line: backslashes, hyphens, and a leading control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def _bold(text: str) -> str:
    return f"\\fB{roff_escape(text)}\\fR"


def _italic(text: str) -> str:
    return f"\\fI{roff_escape(text)}\\fR"


def _roff_paragraphs(paragraphs) -> list[str]:
    out: list[str] = []
    for i, (verbatim, lines) in enumerate(paragraphs):
        if i:
            out.append(".PP")
        if verbatim:
            out += [".nf"] + [roff_escape(ln) for ln in lines] + [".fi"]
        else:
            out += [roff_escape(ln) for ln in lines if ln]
    return out


def render_man(doc: CommandDoc) -> str:
    prog, upper = doc.prog, doc.prog.upper()
    lines = [
        f'.\\" Man page of {prog}, generated by tractorcli.cli.docgen from its click definition.',
        f'.\\" Do not edit: run `{REGENERATE}`.',
        f'.TH "{roff_escape(upper)}" "1" "tractorcli {__version__}" "tractorcli {__version__}" "tractorcli manual"',
        ".SH NAME",
        f"{roff_escape(prog)} \\- {roff_escape(doc.summary)}",
        ".SH SYNOPSIS",
        " ".join([_bold(prog)] + [re.sub(r"[A-Z][A-Z0-9_]*", lambda m: f"\\fI{m.group(0)}\\fR", roff_escape(p))
                                  for p in doc.usage]),
        ".SH DESCRIPTION",
        *_roff_paragraphs(doc.description),
        ".SH OPTIONS",
    ]
    for opt in doc.options:
        tag = ", ".join(_bold(n) for n in opt.names)
        if opt.metavar:
            tag += " " + _italic(opt.metavar)
        lines += [".TP", tag]
        if opt.help:
            lines.append(roff_escape(opt.help))
        if opt.envvar:
            lines.append(f"Also set by the environment variable {_bold(opt.envvar)}.")
    if doc.subcommands:
        lines.append(".SH COMMANDS")
        lines.append(roff_escape(f"Each command has its own --help with examples ({prog} COMMAND --help)."))
        for sub in doc.subcommands:
            lines += [".TP", _bold(sub.name)]
            if sub.summary:
                lines.append(roff_escape(sub.summary))
            if sub.options:  # its own options, indented under it
                lines.append(".RS")
                for opt in sub.options:
                    tag = ", ".join(_bold(n) for n in opt.names)
                    if opt.metavar:
                        tag += " " + _italic(opt.metavar)
                    lines += [".TP", tag]
                    if opt.help:
                        lines.append(roff_escape(opt.help))
                lines.append(".RE")
    if doc.examples:
        lines += [".SH EXAMPLES", ".nf"] + [roff_escape(ln) for ln in doc.examples] + [".fi"]
    if doc.notes:
        lines += [".SH NOTES", *_roff_paragraphs(doc.notes)]
    lines.append(".SH EXIT STATUS")
    for code, text in doc.exit_codes:
        lines += [".TP", _bold(str(code)), roff_escape(text)]
    lines += [
        ".SH ENVIRONMENT",
        ".TP",
        _bold(ENV_CONFIGDIR),
        roff_escape("The site configuration directory, when --configdir is not given "
                    "(default: ~/.config/tractor, or $XDG_CONFIG_HOME/tractor)."),
        ".TP",
        _bold("TRACTOR_DEBUG"),
        roff_escape("When set and not empty, errors are shown with their full traceback, as with --debug."),
    ]
    for name in sorted({o.envvar for o in doc.options if o.envvar}):
        which = ", ".join(o.names[-1] for o in doc.options if o.envvar == name)
        lines += [".TP", _bold(name), roff_escape(f"The value of {which} when it is not given.")]
    lines += [
        ".SH FILES",
        ".TP",
        _italic(f"${ENV_CONFIGDIR}/{TRACTOR_FILE}"),
        roff_escape("Site-wide settings (data directory, engine, retries). Every file and key is optional; "
                    "the config directory is the one given by --configdir, else $TRACTOR_CONFIGDIR, "
                    "else ~/.config/tractor."),
        ".TP",
        _italic(f"${ENV_CONFIGDIR}/{DB_FILE}"),
        roff_escape("Settings of the job database server (port, binaries, data directory, start and stop policy), "
                    "and under [pooler] the site's connection pooler (PgBouncer)."),
    ]
    see_also = [(p, 1) for p in sorted(PROGRAMS) if p != prog] + [(p, 1) for p in SEE_ALSO_EXTRA.get(prog, ())]
    if see_also:
        lines.append(".SH SEE ALSO")
        lines += [f".BR {roff_escape(name)} ({sec}){',' if i < len(see_also) - 1 else ''}"
                  for i, (name, sec) in enumerate(see_also)]
    return "\n".join(lines) + "\n"


# --- shells -------------------------------------------------------------------


def _header(shell: str, prog: str) -> list[str]:
    return [f"# {shell} completion for {prog}, generated by tractorcli.cli.docgen from its click definition.",
            f"# Do not edit: run `{REGENERATE}`."]


def _sh_single_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def bash_function_name(prog: str) -> str:
    return "_" + re.sub(r"[^A-Za-z0-9_]", "_", prog)


def _bash_cases(options, indent: str = "        ") -> list[str]:
    """`case $prev in` branches completing the values of `options`."""
    by_kind: dict[str, list[str]] = {"file": [], "dir": [], "value": []}
    choice_cases: list[str] = []
    for opt in options:
        if opt.kind in by_kind:
            by_kind[opt.kind].extend(opt.names)
        elif opt.kind == "choice":
            words = _sh_single_quote(" ".join(opt.choices))
            choice_cases += [f"{indent}{'|'.join(opt.names)})",
                             f'{indent}    COMPREPLY=( $(compgen -W {words} -- "$cur") )',
                             f"{indent}    return 0", f"{indent}    ;;"]
        elif opt.kind == "columns":
            # a comma list whose items may start with + - = (tq -c +cpu,-title)
            words = _sh_single_quote(" ".join(opt.choices))
            choice_cases += [f"{indent}{'|'.join(opt.names)})",
                             f'{indent}    local last=${{cur##*,}}',
                             f'{indent}    local pre=${{cur%"$last"}}',
                             f'{indent}    local sign=${{last%%[!-+=]*}}',
                             f'{indent}    COMPREPLY=( $(compgen -P "$pre$sign" -W {words} -- "${{last#"$sign"}}") )',
                             f"{indent}    compopt -o nospace 2>/dev/null",
                             f"{indent}    return 0", f"{indent}    ;;"]
    cases: list[str] = []
    for kind, compgen in (("file", "-f"), ("dir", "-d")):
        if by_kind[kind]:
            cases += [f"{indent}{'|'.join(by_kind[kind])})",
                      f"{indent}    local IFS=$'\\n'",
                      f"{indent}    compopt -o filenames 2>/dev/null",
                      f'{indent}    COMPREPLY=( $(compgen {compgen} -- "$cur") )',
                      f"{indent}    return 0", f"{indent}    ;;"]
    cases += choice_cases
    if by_kind["value"]:
        cases += [f"{indent}{'|'.join(by_kind['value'])})",
                  f"{indent}    # a value of no particular kind: nothing to offer",
                  f"{indent}    return 0", f"{indent}    ;;"]
    return cases


def _bash_files(indent: str) -> list[str]:
    return [f'{indent}if [[ $cur != -* ]]; then',
            f"{indent}    local IFS=$'\\n'",
            f"{indent}    compopt -o filenames 2>/dev/null",
            f'{indent}    COMPREPLY=( $(compgen -f -- "$cur") )',
            f"{indent}    return 0",
            f"{indent}fi"]


def render_bash(doc: CommandDoc) -> str:
    func = bash_function_name(doc.prog)
    cases = _bash_cases(doc.options)
    words = " ".join(n for o in doc.options for n in o.names)
    lines = _header("bash", doc.prog) + [
        "",
        f"{func}()",
        "{",
        "    local cur prev=",
        "    COMPREPLY=()",
        '    cur=${COMP_WORDS[COMP_CWORD]}',
        "    if (( COMP_CWORD > 0 )); then",
        "        prev=${COMP_WORDS[COMP_CWORD-1]}",
        "    fi",
        "    # --option=value: bash splits the word at '='",
        "    if [[ $cur == = ]]; then",
        "        cur=",
        "    elif [[ $prev == = ]] && (( COMP_CWORD > 1 )); then",
        "        prev=${COMP_WORDS[COMP_CWORD-2]}",
        "    fi",
    ]
    if cases:
        lines += ["    case $prev in", *cases, "    esac"]
    if doc.subcommands:
        valued = [n for o in doc.options if o.metavar is not None for n in o.names]
        skip = "|".join(["=", *valued])
        lines += [
            f"    local opts={_sh_single_quote(words)}",
            "    # the subcommand: the first word that is neither an option nor an option's value",
            "    local i sub= clause=",
            "    for (( i = 1; i < COMP_CWORD; i++ )); do",
            "        case ${COMP_WORDS[i]} in",
            f"            {skip}) (( i++ )) ;;",
            "            -*) ;;",
            "            *) sub=${COMP_WORDS[i]}; break ;;",
            "        esac",
            "    done",
            "    case $sub in",
            "        '')",
            '            if [[ $cur == -* ]]; then',
            '                COMPREPLY=( $(compgen -W "$opts" -- "$cur") )',
            "            else",
            "                COMPREPLY=( $(compgen -W "
            + _sh_single_quote(" ".join(s.name for s in doc.subcommands)) + ' -- "$cur") )',
            "            fi",
            "            return 0",
            "            ;;",
        ]
        for sub in doc.subcommands:
            sub_words = " ".join(n for o in sub.options for n in o.names)
            sub_cases = _bash_cases(sub.options, " " * 16)
            lines.append(f"        {_sh_single_quote(sub.name)})")
            if sub_cases:
                lines += ["            case $prev in", *sub_cases, "            esac"]
            if sub.path_arguments:
                lines += _bash_files(" " * 12)
            if sub_words:
                lines.append(f"            opts+={_sh_single_quote(' ' + sub_words)}")
            if sub.clause_words:
                lines.append(f"            clause={_sh_single_quote(' '.join(sub.clause_words))}")
            lines.append("            ;;")
        lines += ["    esac",
                  "    # a clause word: attribute names and search aliases",
                  '    if [[ -n $clause && $cur != -* ]]; then',
                  '        COMPREPLY=( $(compgen -W "$clause" -- "$cur") )',
                  "        return 0",
                  "    fi"]
    else:
        if doc.path_arguments:
            lines += _bash_files("    ")
        lines.append(f"    local opts={_sh_single_quote(words)}")
    lines += [
        '    COMPREPLY=( $(compgen -W "$opts" -- "$cur") )',
        "    return 0",
        "}",
        "",
        f"complete -F {func} {doc.prog}",
    ]
    return "\n".join(lines) + "\n"


def _zsh_escape(text: str) -> str:
    # inside an _arguments spec: brackets and colons are syntax there
    return re.sub(r"([\\\[\]:])", r"\\\1", text)


def _zsh_specs(options, path_arguments: bool) -> list[str]:
    specs: list[str] = []
    for opt in options:
        exclusive = "" if opt.multiple or len(opt.names) == 1 else f"({' '.join(opt.names)})"
        repeat = "*" if opt.multiple else ""
        desc = f"[{_zsh_escape(opt.help)}]"
        if opt.metavar is None:
            arg = ""
        else:
            action = {"file": "_files", "dir": "_files -/", "value": " "}.get(opt.kind)
            if opt.kind == "choice":
                action = "(" + " ".join(re.sub(r"([\\\s()'\"])", r"\\\1", c) for c in opt.choices) + ")"
            elif opt.kind == "columns":  # a comma list, items may start with + - = (see _columns_zsh)
                action = "{compset -P '*,'; compset -P '[-+=]'; compadd -S '' -q -- " + " ".join(opt.choices) + "}"
            arg = f":{_zsh_escape(opt.metavar)}:{action}"
        for name in opt.names:
            eq = "=" if opt.metavar is not None and name.startswith("--") else ""
            specs.append(_sh_single_quote(f"{exclusive}{repeat}{name}{eq}{desc}{arg}"))
    if path_arguments:
        specs.append(_sh_single_quote("*:file:_files"))
    return specs


def _zsh_arguments(specs: list[str], head: str, indent: str) -> list[str]:
    if not specs:
        return [f"{indent}{head}"]
    return [f"{indent}{head} \\"] + [f"{indent}  {s} \\" for s in specs[:-1]] + [f"{indent}  {specs[-1]}"]


def render_zsh(doc: CommandDoc) -> str:
    specs = _zsh_specs(doc.options, doc.path_arguments and not doc.subcommands)
    lines = [f"#compdef {doc.prog}"] + _header("zsh", doc.prog) + [""]
    if not doc.subcommands:
        lines += _zsh_arguments(specs, "_arguments -s -S :", "")
        return "\n".join(lines) + "\n"
    lines += ["local curcontext=$curcontext state line ret=1", "typeset -A opt_args", ""]
    specs += [_sh_single_quote("1:command:->command"), _sh_single_quote("*::argument:->argument")]
    # the group's options first, as the tests and readers find them at the top
    lines += _zsh_arguments(specs, "_arguments -C -s -S :", "")
    lines[-1] += " && ret=0"
    lines += ["", "case $state in", "  command)", "    local -a commands", "    commands=("]
    lines += [f"      {_sh_single_quote(s.name.replace(':', chr(92) + ':') + ':' + s.summary)}" for s in doc.subcommands]
    lines += ["    )", "    _describe -t commands 'command' commands && ret=0", "    ;;", "  argument)",
              "    curcontext=${curcontext%:*:*}:" + doc.prog + "-$line[1]:", "    case $line[1] in"]
    for sub in doc.subcommands:
        sub_specs = _zsh_specs(sub.options, sub.path_arguments)
        if sub.clause_words:
            sub_specs.append(_sh_single_quote("*:clause word:(" + " ".join(sub.clause_words) + ")"))
        else:
            sub_specs.append(_sh_single_quote("*:argument: "))
        lines.append(f"      {_sh_single_quote(sub.name)})")
        lines += _zsh_arguments(sub_specs, "_arguments -s -S :", " " * 8)
        lines[-1] += " && ret=0"
        lines.append("        ;;")
    lines += ["    esac", "    ;;", "esac", "return ret"]
    return "\n".join(lines) + "\n"


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_lines(prog: str, options, condition: str | None = None) -> list[str]:
    lines = []
    for opt in options:
        parts = [f"complete -c {prog}"]
        if condition:
            parts.append(f"-n {_fish_quote(condition)}")
        for name in opt.names:
            if name.startswith("--"):
                parts.append(f"-l {name[2:]}")
            elif len(name) == 2:
                parts.append(f"-s {name[1:]}")
            else:
                parts.append(f"-o {name[1:]}")
        if opt.kind == "file":
            parts.append("-r -F")
        elif opt.kind == "dir":
            parts.append("-x -a '(__fish_complete_directories)'")
        elif opt.kind == "choice":
            parts.append("-x -a " + _fish_quote(" ".join(opt.choices)))
        elif opt.kind == "columns":  # a comma list, items may start with + - = (__PROG_columns)
            parts.append("-x -a " + _fish_quote(f"(__{prog.replace('-', '_')}_columns " + " ".join(opt.choices) + ")"))
        elif opt.kind == "value":
            parts.append("-x")
        parts.append("-d " + _fish_quote(opt.help))
        lines.append(" ".join(parts))
    return lines


_FISH_COLUMNS = """\
# -c/--cols and -s/--sortby: a comma list of names, each may start with + - =
function __{func}_columns
    set -l cur (commandline -ct)
    # (string replace always prints, an empty string too: an empty list would print nothing below)
    set -l pre (string replace -r '[^,]*$' '' -- $cur)
    set -l last (string replace -r '^.*,' '' -- $cur)
    set -l sign (string replace -r '^([-+=]?).*$' '$1' -- $last)
    for name in $argv
        echo $pre$sign$name
    end
end
"""


def render_fish(doc: CommandDoc) -> str:
    lines = _header("fish", doc.prog) + [""]
    if any(o.kind == "columns" for sub in doc.subcommands for o in sub.options):
        lines += _FISH_COLUMNS.format(func=doc.prog.replace("-", "_")).splitlines() + [""]
    if not doc.path_arguments or doc.subcommands:
        lines.append(f"complete -c {doc.prog} -f")
    lines += _fish_lines(doc.prog, doc.options)
    if doc.subcommands:
        lines.append("")
        for sub in doc.subcommands:
            lines.append(f"complete -c {doc.prog} -n __fish_use_subcommand -a {_fish_quote(sub.name)} "
                         f"-d {_fish_quote(sub.summary)}")
        for sub in doc.subcommands:
            condition = f"__fish_seen_subcommand_from {sub.name}"
            if sub.path_arguments:
                lines.append(f"complete -c {doc.prog} -n {_fish_quote(condition)} -F")
            if sub.clause_words:
                lines.append(f"complete -c {doc.prog} -n {_fish_quote(condition)} -a "
                             f"{_fish_quote(' '.join(sub.clause_words))} -d 'clause word'")
            lines += _fish_lines(doc.prog, sub.options, condition)
    return "\n".join(lines) + "\n"


# --- files --------------------------------------------------------------------


def generate(programs=None) -> dict[str, str]:
    """Relative path -> content of every generated file, in a stable order."""
    files: dict[str, str] = {}
    for prog in sorted(programs if programs is not None else PROGRAMS):
        doc = describe(prog)
        files[f"man/{prog}.1"] = render_man(doc)
        files[f"completions/{prog}.bash"] = render_bash(doc)
        files[f"completions/_{prog}"] = render_zsh(doc)
        files[f"completions/{prog}.fish"] = render_fish(doc)
    return files


def default_root() -> Path:
    """The source checkout this module lives in (src/tractorcli/cli/docgen.py)."""
    return Path(__file__).resolve().parents[3]


def stale_files(root: Path, files: dict[str, str]) -> list[tuple[str, str]]:
    """(path, 'missing' | 'differs') for every file not as generated."""
    out = []
    for rel, text in files.items():
        path = root / rel
        if not path.is_file():
            out.append((rel, "missing"))
        elif path.read_bytes() != text.encode("utf-8"):
            out.append((rel, "differs"))
    return out


@click.command("docgen", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--write", "mode", flag_value="write", help="Regenerate the files under the root.")
@click.option("--check", "mode", flag_value="check",
              help="Exit 1, listing the files that differ or are missing; 0 if all are current.")
@click.option("--root", type=click.Path(file_okay=False), metavar="DIR",
              help="Repository root holding man/ and completions/ (default: this source checkout).")
def command(mode: str | None, root: str | None) -> None:
    """Generate the man pages and shell completions from the click definitions."""
    if mode is None:
        raise click.UsageError("give --write or --check")
    base = Path(root) if root else default_root()
    if root is None and not (base / "pyproject.toml").is_file():
        raise click.UsageError(f"{base} is not a source checkout; give --root DIR")
    files = generate()
    stale = stale_files(base, files)
    if mode == "check":
        for rel, why in stale:
            click.echo(f"{why}: {rel}", err=True)
        if stale:
            click.echo(f"{len(stale)} file(s) out of date; run `{REGENERATE}`", err=True)
            sys.exit(1)
        return
    for rel, _why in stale:
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[rel].encode("utf-8"))
        click.echo(f"wrote {rel}", err=True)
    click.echo(f"{len(stale)} of {len(files)} file(s) written under {base}", err=True)


def main(argv: list[str] | None = None) -> None:
    command.main(args=argv, prog_name="python -m tractorcli.cli.docgen")


if __name__ == "__main__":  # pragma: no cover
    main()
