"""Launch-time substitutions (reference §4.6) and the launch environment."""

from __future__ import annotations

import os
import pwd

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tractorcli.errors import BadInput
from tractorcli.subst import (
    EnvKeyHandler,
    LaunchContext,
    dirmap,
    escape,
    expand_argv,
    expand_text,
    expand_vars,
    expand_word,
    launch_env,
)

CTX = LaunchContext(
    jid=12,
    tid=3,
    cid=7,
    hostname="percival",
    slots=4,
    recover=1,
    resume_count=2,
    quality=0.75,
    idrefs={"bob": ["antigone"], "h.settings": ["x1"], "farm": ["a", "b"]},
    dirmaps=[("mayabatch", "maya", "NFS"), ("X:/", "//fileserver/projects/", "UNC"), ("X:/", "/fileserver/projects/", "NFS")],
    zone="nfs",
    home="/home/alice",
    owner="alice",
    spoolhost="ws1",
    projects=("show", "rnd"),
    tractor_root="/opt/tractor",
)


def w(word: str, ctx: LaunchContext = CTX) -> str:
    return expand_word(word, ctx)


@pytest.mark.parametrize(
    "word, out",
    [
        ("%j", "12"),
        ("%t", "3"),
        ("%c", "7"),
        ("%n", "4"),
        ("%r", "1"),
        ("%R", "2"),
        ("%q", "0.75"),
        ("%h", "percival"),
        ("%H", "-h percival"),
        ("%%", "%"),
        ("100%%", "100%"),
        ("%%j", "%j"),
        ("J%{j}T%{t}C%{c}", "J12T3C7"),
        ("%{h}.settings", "percival.settings"),
        ("/out/%j/frame", "/out/12/frame"),
        ("a%j-b", "a12-b"),
        ("frame %t.", "frame 3."),  # a trailing dot is not part of a name
    ],
)
def test_builtins(word, out):
    assert w(word) == out


def test_quality_final_is_one_point_zero():
    assert w("%q", LaunchContext(1, 1, 1)) == "1.0"


@pytest.mark.parametrize(
    "word",
    ["%04d", "%s", "%t.exr", "%jfoo", "%x", "%", "50% off", "%-", "%{}", "%{a b}", "%{h", "%.", "%D(unclosed"],
)
def test_unknown_sequences_are_kept_literally(word):
    unknown: list[str] = []
    assert expand_word(word, CTX, unknown=unknown) == word


def test_unknown_sequences_are_reported():
    unknown: list[str] = []
    expand_word("out.%t.exr %04d %j %%s %zz(host)", CTX, unknown=unknown)
    assert unknown == ["%t.exr", "%04d", "%zz"]


def test_dotted_name_is_an_idref_as_documented():
    # Tractor's docs: "%h.settings" looks for -id h.settings; braces are needed for the host.
    assert w("%h.settings") == "x1"
    assert w("%{h}.settings") == "percival.settings"


def test_idrefs():
    assert w("%bob(host)") == "antigone"
    assert w("%bob(-host)") == "-h antigone"
    assert w("%{bob}(host)") == "antigone"
    assert w("%farm(host),x") == "a b,x"
    assert w("%bob") == "antigone"
    assert w("%nobody(host)") == "%nobody(host)"
    # a builtin name followed by (host) with no such id: the builtin, text kept
    assert w("%h(host)") == "percival(host)"


def test_dirmaps_follow_the_zone_and_first_prefix():
    assert w("%D(mayabatch)") == "maya"
    assert w("%D(X:/proj1/scenes/test.ma)") == "/fileserver/projects/proj1/scenes/test.ma"
    unc = LaunchContext(1, 1, 1, dirmaps=CTX.dirmaps, zone="unc")
    assert w("%D(X:/proj1)", unc) == "//fileserver/projects/proj1"
    assert w("%D(mayabatch)", unc) == "mayabatch"
    # only a prefix is mapped, and the %D() wrapper always goes
    assert w("%D(zzzX:/a)") == "zzzX:/a"
    assert w("-file=%D(X:/a)") == "-file=/fileserver/projects/a"
    assert w("%{D}(X:/a)") == "/fileserver/projects/a"


def test_dirmap_inner_text_is_substituted_first_and_parens_nest():
    ctx = LaunchContext(5, 1, 1, dirmaps=[("/p/5", "/q", "nfs")], zone="nfs")
    assert w("%D(/p/%j/x)", ctx) == "/q/x"
    assert w("%D(/a(b)c)d", ctx) == "/a(b)cd"


def test_dirmap_ignores_malformed_entries():
    assert dirmap("/a/b", [("/a",), ("/a", "/z"), (1, 2, 3), ("/a", "/y", "NFS")], "nfs") == "/y/b"


def test_values_are_not_scanned_again():
    ctx = LaunchContext(1, 1, 1, hostname="h%j", dirmaps=[("/a", "/%t", "nfs")], zone="nfs")
    assert w("%h", ctx) == "h%j"
    assert w("%D(/a/b)", ctx) == "/%t/b"


def test_tilde():
    assert w("~") == "/home/alice"
    assert w("~/scenes/%j") == "/home/alice/scenes/12"
    assert w("~root/x") == pwd.getpwnam("root").pw_dir + "/x"
    assert w("~no_such_user_xyz/x") == "~no_such_user_xyz/x"
    assert w("a~b") == "a~b"
    # only at the start of a word, and not in free text
    assert expand_text("~/x", CTX) == "~/x"


def test_tilde_default_home_is_the_current_users():
    assert w("~/x", LaunchContext(1, 1, 1)) == os.path.expanduser("~") + "/x"


def test_argv_host_lists_become_words():
    ctx = LaunchContext(1, 2, 3, hostname="me", hosts=("antigone", "percival"), idrefs={"bob": ["a", "b"]})
    argv = ["netrender", "%H", "/net/my_ribs/a.rib"]
    assert expand_argv(argv, ctx) == ["netrender", "-h", "antigone", "-h", "percival", "/net/my_ribs/a.rib"]
    assert expand_argv(["rsh", "%h", "ls"], ctx) == ["rsh", "antigone", "percival", "ls"]
    assert expand_argv(["x", "%{H}", "%bob(-host)", "%bob(host)"], ctx) == ["x", "-h", "antigone", "-h", "percival", "-h", "a", "-h", "b", "a", "b"]
    assert expand_argv(["%bob", "%{bob}", "%nobody(host)"], ctx) == ["a", "b", "a", "b", "%nobody(host)"]
    # builtins win over an id of the same name unless (host) asks for the id
    both = LaunchContext(1, 2, 3, idrefs={"j": ["x"], "h": ["y"]})
    assert expand_argv(["%j", "%j(host)", "%h(host)"], both) == ["1", "x", "y"]
    # embedded: joined by spaces, still one word
    assert expand_argv(["--hosts=%h"], ctx) == ["--hosts=antigone percival"]
    # a RemoteCmd's bound host is the blade itself
    assert expand_argv(["%H"], LaunchContext(1, 1, 1, hostname="me")) == ["-h", "me"]


def test_argv_words_are_never_split_or_joined_otherwise():
    argv = ["/bin/sh", "-c", "echo %j > /tmp/out %t", "", "a b"]
    assert expand_argv(argv, CTX) == ["/bin/sh", "-c", "echo 12 > /tmp/out 3", "", "a b"]


def test_escape_round_trip_examples():
    for t in ["100%", "%%", "%j", "%D(x)", "a%{h}b", ""]:
        assert expand_text(escape(t), CTX) == t


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("%{}()-.~/_ jtchHnrRqDbo0x")) | st.characters(), max_size=30), max_size=5))
def test_expand_argv_never_raises(argv):
    unknown: list[str] = []
    out = expand_argv(argv, CTX, unknown=unknown)
    assert all(isinstance(x, str) for x in out)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("%{}()-.~/_ jtchHnrRqDbo0x")) | st.characters(), max_size=40))
def test_escaped_text_round_trips(text):
    assert expand_text(escape(text), CTX) == text
    if not text.startswith("~"):
        assert expand_argv([escape(text)], CTX) == [text]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="%~"), max_size=40))
def test_text_without_sequences_is_unchanged(text):
    assert expand_argv([text], CTX) == [text]


# --- environment -----------------------------------------------------------


def test_context_variables():
    env = launch_env({"PATH": "/bin", "TR_ENV_JID": "old"}, CTX)
    assert env["TR_ENV_JID"] == "12"
    assert env["TR_ENV_TID"] == "3"
    assert env["TR_ENV_CID"] == "7"
    assert env["TR_ENV_JOB_PROJECT"] == "show rnd"
    assert env["TR_ENV_TRACTOR_ROOT"] == "/opt/tractor"
    assert env["TR_SPOOLHOST"] == env["REMOTEHOST"] == "ws1"
    assert env["PATH"] == "/bin"


def test_base_env_is_not_modified():
    base = {"A": "1"}
    launch_env(base, CTX, ["setenv A=2"])
    assert base == {"A": "1"}


def test_setenv_envkeys():
    env = launch_env({"PATH": "/bin"}, CTX, ["setenv A=x B=y", "setenv PATH=/opt/bin:$PATH {C=two words}"])
    assert env["A"] == "x" and env["B"] == "y"
    assert env["PATH"] == "/opt/bin:/bin"
    assert env["C"] == "two words"
    assert launch_env({}, CTX, "setenv Z=1")["Z"] == "1"  # a single key as a string


def test_setenv_malformed():
    with pytest.raises(BadInput, match="not NAME=value"):
        launch_env({}, CTX, ["setenv JUSTANAME"])
    with pytest.raises(BadInput):
        launch_env({}, CTX, ["setenv 1A=x"])


def test_named_handlers_from_a_mapping():
    handlers = {"default": {"SHOW": "(not_set)"}, "nuke-9.0v8": {"NUKE": "/opt/nuke9", "PATH": "$NUKE/bin:$PATH"}}
    unmatched: list[str] = []
    env = launch_env({"PATH": "/bin"}, CTX, ["nuke-9.0v8", "setenv SHOW=x", "maya2024"], handlers, unmatched=unmatched)
    assert env["SHOW"] == "x"  # setenv after default
    assert env["NUKE"] == "/opt/nuke9"
    assert env["PATH"] == "/opt/nuke9/bin:/bin"
    assert unmatched == ["maya2024"]


def test_handler_globs_and_name_value_keys():
    handlers = [
        EnvKeyHandler(("default",), {"REMOTEHOST": "$TR_SPOOLHOST!", "RMANVER": "none"}),
        EnvKeyHandler(("prman-*",), {"RMANTREE": "/opt/pixar/RenderManProServer-$TR_ENV_RMANVER", "PATH": "$RMANTREE/bin:$PATH"}),
        EnvKeyHandler(("SHOT=*", "SCENE=*"), {"CURRENT_SHOT": "$SHOT", "CURRENT_SCENE": "${SCENE}"}),
        EnvKeyHandler(("prman-25*",), {"NEVER": "1"}),  # the first match wins
    ]
    env = launch_env({"PATH": "/bin", "TR_ENV_RMANVER": "25.2"}, CTX, ["prman-25.2", "SHOT=sh010", "SCENE=a"], handlers)
    assert env["REMOTEHOST"] == "ws1!"
    assert env["RMANTREE"] == "/opt/pixar/RenderManProServer-25.2"
    assert env["PATH"] == "/opt/pixar/RenderManProServer-25.2/bin:/bin"
    assert env["SHOT"] == "sh010" and env["CURRENT_SHOT"] == "sh010"
    assert env["CURRENT_SCENE"] == "a"
    assert "NEVER" not in env


def test_default_handler_applies_without_envkeys_and_once():
    calls = [EnvKeyHandler(("default",), {"N": "$N+"})]
    env = launch_env({"N": ""}, CTX, ["default"], calls)
    assert env["N"] == "+"


def test_envkeys_are_case_sensitive():
    unmatched: list[str] = []
    launch_env({}, CTX, ["Prman-25"], [EnvKeyHandler(("prman-*",), {"X": "1"})], unmatched=unmatched)
    assert unmatched == ["Prman-25"]


def test_expand_vars():
    env = {"A": "1", "B_2": "two"}
    assert expand_vars("$A/${B_2}/$NOPE/$$/x$", env) == "1/two//$$/x$"
    assert expand_vars("plain", env) == "plain"
